"""The paper session's journal: every decision, order, status, fill and commission, durable.

A live session writes each order here BEFORE sending it and each bar, decision, status, fill
and commission as it arrives. A session killed at any instant (SIGKILL, a crash, a reboot)
and restarted reads the journal back, adopts the orders Interactive Brokers already knows
(every order carries ``orderRef = order_ref(n)``, so nothing is sent twice) and reconciles
its fills with the account's executions (``known_exec_ids``).

**What is on disk when** (the rule; :mod:`.journal_writer` has the mechanics). The file is
SQLite in WAL mode. ``record_order`` and ``record_session`` return only once committed, in
one transaction with every record made before them; with ``synchronous="FULL"`` (the
default, ``paper.journal_sync``) that commit syncs the WAL, so an order intent and everything
the strategy knew when it decided are on disk before ``placeOrder``: one fsync on the path
from a bar to its order. Every other record is buffered and committed, without an fsync, by
the next order, by a read, or within about 0.1 s by the journal's flusher thread; under
FULL it reaches the disk with the next order's commit or within about a second.

**What a crash loses, point by point on the path, and how a restart recovers it:**

- *Killed (SIGKILL, ``os._exit``, an exception that skips ``close``) after a bar, a decision,
  a status, a fill or a commission arrived:* the records of the last ~0.1 s that no order
  commit took along. Bars come back from IB's history (the restarted feed's warm-up records
  them again); statuses and IB's order ids from IB's open orders, matched by ``orderRef``
  (the broker adopts orders IB still works); fills and commissions from IB's executions,
  matched by ``orderRef`` and keyed by ``execId`` (same-day restarts: IB reports only today's
  executions; after a later-day restart a lost fill shows as a journal/IB position
  difference, which stops the session unless ``--adopt-positions``). A decision that no order
  followed is lost.
- *Killed after ``record_order`` returned, before ``placeOrder``:* nothing of the journal;
  the order is journaled ``PendingSubmit`` and IB never heard of it. The restart finds no
  open order or execution with its ``orderRef``, does not send it, and the strategy decides
  again from its unchanged position.
- *Killed after ``placeOrder``:* nothing IB does not also know: the intent is on disk with its
  ``orderRef``; the restart adopts the order from IB's open orders or takes its executions.
- *Power loss or an OS crash:* with FULL, order intents are never lost; the other records
  committed since the last sync (at most about a second, or since the last order) may be, and
  come back as above. With ``synchronous="NORMAL"`` nothing is synced per commit: a killed
  process loses the same as with FULL, but power loss may lose anything since the last
  checkpoint, order intents too (a restart would then hand out an order number IB saw).

One connection, guarded by the writer's lock: events arrive from the IB client's thread and
from Backtrader's. What the broker asks on every fill (``record_fill``'s "was it new",
``has_fill``, ``commission``) and the next order number are answered from memory, kept with
each record and loaded at open, so the bar's path reads nothing from the file. Times are ISO
8601 UTC strings of fixed width (so text order is time order); naive times are taken as UTC.
Numbers are REAL.

The tables and the helpers every journal module shares are in :mod:`.journal_schema`; the
report's frames are built from the journal's rows in :mod:`.journal_frames`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from kerastrader.brokers.journal_frames import report_frames
from kerastrader.brokers.journal_schema import (
    BAR_COLUMNS,
    DONE_STATUSES,
    SCHEMA,
    SCHEMA_VERSION,
    UNSET_DOUBLE,
    new_run_id,
    now_iso,
    real,
    split_ref,
    utc_iso,
)
from kerastrader.brokers.journal_writer import JournalError, Writer

__all__ = ["DONE_STATUSES", "Journal", "JournalError", "new_run_id", "utc_iso"]

log = logging.getLogger(__name__)


class Journal:
    """An SQLite journal of one paper (or dry-run) trading run; see the module docstring.

    ``Journal(path)`` creates the file or reopens it. A new file gets a new ``run_id``; a
    reopened one keeps its own unless ``run_id`` is passed (then that run's order numbers are
    continued, or started at 1 for a run the file has not seen). ``background=False`` writes
    every record in its own transaction at once (the old behaviour, for comparison).
    """

    def __init__(
        self,
        path: str | Path,
        run_id: str | None = None,
        synchronous: str = "FULL",
        background: bool = True,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self.path, synchronous=synchronous, background=background)
        self._lock = self._writer.lock

        def setup(conn: sqlite3.Connection) -> str | None:
            # Statement by statement: executescript would COMMIT the transaction first.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            stored = conn.execute("SELECT value FROM meta WHERE key = 'run_id'").fetchone()
            self.run_id = run_id or (stored[0] if stored else new_run_id())
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('run_id', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (self.run_id,),
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            return stored[0] if stored else None

        stored = self._writer.write(setup, durable=True)
        if stored and stored != self.run_id:
            log.info("journal %s: run %s follows run %s", self.path, self.run_id, stored)
        # What the broker asks on the bar's path, answered from memory (see the docstring).
        self._refs = {r["ref"] for r in self._rows("SELECT ref FROM orders")}
        self._exec_ids = {r["exec_id"] for r in self._rows("SELECT exec_id FROM fills")}
        self._commissions = {
            r["exec_id"]: float(r["commission"])
            for r in self._rows("SELECT exec_id, commission FROM commissions")
        }
        row = self._rows("SELECT MAX(number) AS n FROM orders WHERE run_id = ?", (self.run_id,))
        self._last_number = int(row[0]["n"] or 0)

    # -- plumbing ---------------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        return self._writer.read(
            lambda conn: [dict(row) for row in conn.execute(sql, params).fetchall()]
        )

    def flush(self) -> None:
        """Commit the records buffered so far (no fsync): a killed process keeps them."""
        self._writer.flush()

    def close(self) -> None:
        """Commit what is buffered, sync, checkpoint the WAL into the main file and close; the
        journal stays reopenable."""
        self._writer.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- orders' identity ---------------------------------------------------------------------

    def order_ref(self, number: int) -> str:
        """The ``orderRef`` of this run's order ``number``: how a restart recognises its orders.

        IB echoes ``orderRef`` in open orders, statuses and executions, so an order that IB
        already holds after a reconnect or restart is adopted instead of being sent again.
        """
        return f"{self.run_id}:{int(number)}"

    def known_at_ib(self, ref: str) -> None:
        """IB holds an order of this run (an open order or an execution naming ``ref``): later
        numbers come after it, even when its own intent never reached the disk (``normal``
        durability and a power loss), so no number IB has seen is used twice."""
        run, _, number = str(ref).rpartition(":")
        if run == self.run_id and number.isdigit():
            with self._lock:
                self._last_number = max(self._last_number, int(number))

    def next_order_number(self) -> int:
        """1 + the highest order number this run has recorded (so it survives a restart)."""
        with self._lock:
            return self._last_number + 1

    # -- events -------------------------------------------------------------------------------

    def record_session(self, **info: Any) -> None:
        """A session started or resumed: config hash, account, host/port, mode, time.

        ``time`` defaults to now; values that are not JSON (paths, datetimes) are stored as
        text. Committed before it returns (a restart reads the capital stated here)."""
        time = utc_iso(info.pop("time", None) or dt.datetime.now(dt.UTC))
        text = json.dumps(info, default=str, sort_keys=True)
        self._writer.write(
            lambda conn: conn.execute(
                "INSERT INTO sessions (run_id, time, info) VALUES (?, ?, ?)",
                (self.run_id, time, text),
            ),
            durable=True,
        )

    def record_bar(
        self,
        symbol: str,
        time: Any,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> None:
        """A bar the strategy saw (buffered). Again for the same ``(symbol, time)``: the latest
        values win (IB revises a bar that is still forming), never a second row."""
        row = (symbol, utc_iso(time), *(real(v) for v in (open, high, low, close, volume)))
        self._writer.write(
            lambda conn: conn.execute(
                "INSERT INTO bars (symbol, time, open, high, low, close, volume)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (symbol, time) DO UPDATE SET open = excluded.open,"
                " high = excluded.high, low = excluded.low, close = excluded.close,"
                " volume = excluded.volume",
                row,
            )
        )

    def record_decision(
        self, time: Any, symbol: str, prediction: float, target: float, note: str = ""
    ) -> None:
        """What the model predicted and the target the strategy derived: the why of an order
        (buffered; committed with the order it leads to)."""
        row = (self.run_id, utc_iso(time), symbol, real(prediction), real(target), note)
        self._writer.write(
            lambda conn: conn.execute(
                "INSERT INTO decisions (run_id, time, symbol, prediction, target, note)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    def record_order(
        self,
        ref: str,
        symbol: str,
        action: str,
        quantity: float,
        order_type: str,
        limit: float | None = None,
        stop: float | None = None,
        trail_percent: float | None = None,
        parent_ref: str | None = None,
        ib_order_id: int | None = None,
        dry_run: bool = False,
    ) -> None:
        """An order about to be sent, recorded BEFORE sending it, with status PendingSubmit.

        Returns once committed (and, under FULL, synced) together with every record made
        before it. If the session dies between this and the send, the restart finds the order
        here and asks IB (by ``orderRef``) whether it arrived, instead of guessing. A ref
        recorded before is refused: that would be the same order twice.
        """
        run, number = split_ref(ref)
        now = now_iso()
        order = (ref, run or self.run_id, number, symbol, action, float(quantity), order_type,
                 real(limit), real(stop), real(trail_percent), parent_ref, ib_order_id,
                 int(bool(dry_run)), float(quantity), now, now)  # fmt: skip

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO orders (ref, run_id, number, symbol, action, quantity,"
                " order_type, limit_price, stop_price, trail_percent, parent_ref,"
                " ib_order_id, dry_run, status, filled, remaining, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'PendingSubmit', 0, ?, ?, ?)",
                order,
            )
            conn.execute(
                "INSERT INTO order_status (ref, time, status, filled, remaining)"
                " VALUES (?, ?, 'PendingSubmit', 0, ?)",
                (ref, now, float(quantity)),
            )

        with self._lock:  # the ref is taken at once: a second thread with it is refused
            if ref in self._refs:
                raise ValueError(f"order {ref!r} is already in the journal {self.path}")
            self._refs.add(ref)
            try:
                self._writer.write(write, durable=True)
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"order {ref!r} is already in the journal {self.path}") from exc
            except BaseException:
                self._refs.discard(ref)
                raise
            if run == self.run_id and number is not None:
                self._last_number = max(self._last_number, number)

    def set_ib_order_id(self, ref: str, ib_order_id: int) -> None:
        """IB's orderId once the client assigned it (it changes across client ids, the ref
        not); buffered (a restart takes it from IB's open orders by ``orderRef``)."""
        if ref not in self._refs:
            raise KeyError(f"no order {ref!r} in the journal {self.path}")
        row = (int(ib_order_id), now_iso(), ref)
        self._writer.write(
            lambda conn: conn.execute(
                "UPDATE orders SET ib_order_id = ?, updated = ? WHERE ref = ?", row
            )
        )

    def record_status(
        self,
        ref: str,
        status: str,
        filled: float = 0.0,
        remaining: float | None = None,
        avg_price: float | None = None,
        why: str = "",
    ) -> None:
        """An order's new status, as it arrives (buffered); the order keeps the latest, the
        history all.

        IB repeats identical statuses; a repeat of the previous one adds no history row. A
        status for an order this journal never recorded (placed from TWS, another client) is
        kept in the history and logged: it is evidence, not noise.
        """
        now = now_iso()
        values = (status, float(filled), real(remaining), real(avg_price), why)
        if ref not in self._refs:
            log.warning("status %s for order %r, which this journal never recorded", status, ref)

        def write(conn: sqlite3.Connection) -> None:
            last = conn.execute(
                "SELECT status, filled, remaining, avg_price, why FROM order_status"
                " WHERE ref = ? ORDER BY id DESC LIMIT 1",
                (ref,),
            ).fetchone()
            if last is None or tuple(last) != values:
                conn.execute(
                    "INSERT INTO order_status (ref, time, status, filled, remaining, avg_price,"
                    " why) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (ref, now, *values),
                )
            conn.execute(
                "UPDATE orders SET status = ?, filled = ?, remaining = ?, avg_price = ?, why = ?,"
                " updated = ? WHERE ref = ?",
                (*values, now, ref),
            )

        self._writer.write(write)

    def record_fill(
        self, exec_id: str, ref: str, symbol: str, time: Any, shares: float, price: float
    ) -> bool:
        """An execution (``shares`` signed: + buy, - sell), buffered. False if ``exec_id``
        was known.

        IB re-sends executions after a reconnect and on ``reqExecutions``; keyed by ``execId``
        each counts once, so positions and cash never double.
        """
        row = (exec_id, ref, symbol, utc_iso(time), float(shares), float(price))
        with self._lock:
            if exec_id in self._exec_ids:
                return False
            self._exec_ids.add(exec_id)
            self._writer.write(
                lambda conn: conn.execute(
                    "INSERT OR IGNORE INTO fills (exec_id, ref, symbol, time, shares, price)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
            )
        return True

    def record_commission(
        self, exec_id: str, commission: float, realized_pnl: float | None = None
    ) -> None:
        """The commission of execution ``exec_id``, before or after its fill arrives
        (buffered).

        Recorded again, the latest report wins (one row per execution). IB's "unset"
        realizedPNL (the largest double) is stored as NULL.
        """
        if realized_pnl is not None and abs(realized_pnl) >= UNSET_DOUBLE:
            realized_pnl = None
        row = (exec_id, float(commission), real(realized_pnl), now_iso())
        with self._lock:
            self._commissions[exec_id] = float(commission)
            self._writer.write(
                lambda conn: conn.execute(
                    "INSERT INTO commissions (exec_id, commission, realized_pnl, time)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (exec_id) DO UPDATE SET"
                    " commission = excluded.commission, realized_pnl = excluded.realized_pnl",
                    row,
                )
            )

    # -- reading back -------------------------------------------------------------------------

    def sessions(self) -> list[dict[str, Any]]:
        """Every session start/resume, oldest first, with ``info`` decoded."""
        rows = self._rows("SELECT run_id, time, info FROM sessions ORDER BY id")
        for row in rows:
            row["info"] = json.loads(row["info"])
        return rows

    def orders(self) -> list[dict[str, Any]]:
        """Every order of every run in this file, oldest first (``dry_run`` as a bool)."""
        return self._orders("")

    def open_orders(self) -> list[dict[str, Any]]:
        """Orders not yet in a final state (Filled, Cancelled, ApiCancelled, Inactive).

        Dry-run orders are included (check ``dry_run``): IB never saw them.
        """
        marks = ", ".join("?" * len(DONE_STATUSES))
        return self._orders(f"WHERE status NOT IN ({marks})", tuple(sorted(DONE_STATUSES)))

    def order(self, ref: str) -> dict[str, Any] | None:
        """One order by its ``orderRef``, or None."""
        rows = self._orders("WHERE ref = ?", (ref,))
        return rows[0] if rows else None

    def _orders(self, where: str, params: tuple = ()) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT * FROM orders {where} ORDER BY created, rowid", params)
        for row in rows:
            row["dry_run"] = bool(row["dry_run"])
        return rows

    def status_history(self, ref: str) -> list[dict[str, Any]]:
        """The distinct statuses order ``ref`` went through, oldest first."""
        return self._rows(
            "SELECT time, status, filled, remaining, avg_price, why FROM order_status"
            " WHERE ref = ? ORDER BY id",
            (ref,),
        )

    def fills(self) -> list[dict[str, Any]]:
        """Every execution in time order, with its commission (None until it arrives)."""
        return self._rows(
            "SELECT f.exec_id, f.ref, f.symbol, f.time, f.shares, f.price, c.commission,"
            " c.realized_pnl FROM fills f LEFT JOIN commissions c USING (exec_id)"
            " ORDER BY f.time, f.rowid"
        )

    def has_fill(self, exec_id: str) -> bool:
        """Whether execution ``exec_id`` is journaled (from memory)."""
        return exec_id in self._exec_ids

    def commission(self, exec_id: str) -> float | None:
        """The commission journaled for ``exec_id``, None before its report arrived (from
        memory)."""
        return self._commissions.get(exec_id)

    def known_exec_ids(self) -> set[str]:
        """The executions already journalled: on reconciliation, the others are new."""
        with self._lock:
            return set(self._exec_ids)

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision in time order."""
        return self._rows(
            "SELECT run_id, time, symbol, prediction, target, note FROM decisions ORDER BY time, id"
        )

    def bars(self, symbol: str) -> pd.DataFrame:
        """``symbol``'s recorded bars: OHLCV columns, a UTC DatetimeIndex named ``datetime``."""
        rows = self._rows(
            "SELECT time, open, high, low, close, volume FROM bars WHERE symbol = ? ORDER BY time",
            (symbol,),
        )
        frame = pd.DataFrame(rows, columns=["time", *BAR_COLUMNS])
        index = pd.DatetimeIndex(pd.to_datetime(frame.pop("time"), utc=True), name="datetime")
        return frame.set_axis(index).astype(float)

    def positions(self) -> dict[str, float]:
        """Shares held per symbol, summed from the fills; symbols netted to zero are left out."""
        rows = self._rows("SELECT symbol, SUM(shares) AS shares FROM fills GROUP BY symbol")
        return {row["symbol"]: float(row["shares"]) for row in rows if abs(row["shares"]) > 1e-9}

    def cash(self, start_cash: float) -> float:
        """``start_cash`` minus what the fills bought (plus what they sold) minus commissions.

        Every commission counts, also one whose fill has not arrived: IB charged it.
        """

        def totals(conn: sqlite3.Connection) -> tuple[float, float]:
            spent = conn.execute("SELECT TOTAL(shares * price) FROM fills").fetchone()[0]
            paid = conn.execute("SELECT TOTAL(commission) FROM commissions").fetchone()[0]
            return float(spent), float(paid)

        spent, paid = self._writer.read(totals)
        return float(start_cash) - spent - paid

    def report_frames(self, start_cash: float) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
        """``(returns, positions, transactions)`` for the run files, from one consistent read
        of bars, fills and commissions (see :func:`.journal_frames.report_frames`)."""
        with self._lock:  # no event lands between the queries
            bars = self._rows("SELECT symbol, time, close FROM bars ORDER BY time")
            fills = self.fills()
            orphans = self._rows(
                "SELECT c.time, c.commission FROM commissions c"
                " LEFT JOIN fills f USING (exec_id) WHERE f.exec_id IS NULL"
            )
        return report_frames(bars, fills, [(o["time"], o["commission"]) for o in orphans],
                             start_cash)  # fmt: skip

"""The paper session's journal: every decision, order, status, fill and commission, durable.

A live session writes each order here BEFORE sending it and each status, fill and commission
AS it arrives, one SQLite transaction per event. A session killed at any instant (SIGKILL, a
crash, a reboot) and restarted reads the journal back, adopts the orders Interactive Brokers
already knows (every order carries ``orderRef = order_ref(n)``, so nothing is sent twice) and
reconciles its fills with the account's executions (``known_exec_ids``).

Durability: WAL mode with ``synchronous=FULL``. WAL alone (``NORMAL``) survives a killed
process but may lose the last commits on power loss or an OS crash; ``FULL`` syncs the WAL at
every commit so a record that says "this order was about to be sent" survives those too. The
fsync per commit costs about a millisecond on the path from a bar to its order (measured in
``benchmarks/bench_paper.py``); ``synchronous="NORMAL"`` (``paper.journal_sync = "normal"``)
trades the power-loss guarantee for that time and still survives a killed process.

One connection (``check_same_thread=False``) guarded by a lock: events arrive from the IB
client's thread and from Backtrader's. Times are ISO 8601 UTC strings of fixed width (so text
order is time order); naive times are taken as UTC. Numbers are REAL.

The tables and the helpers every journal module shares are in :mod:`.journal_schema`; the
report's frames are built from the journal's rows in :mod:`.journal_frames`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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

__all__ = ["DONE_STATUSES", "Journal", "new_run_id", "utc_iso"]

log = logging.getLogger(__name__)


class Journal:
    """An SQLite journal of one paper (or dry-run) trading run; see the module docstring.

    ``Journal(path)`` creates the file or reopens it. A new file gets a new ``run_id``; a
    reopened one keeps its own unless ``run_id`` is passed (then that run's order numbers are
    continued, or started at 1 for a run the file has not seen).
    """

    def __init__(
        self, path: str | Path, run_id: str | None = None, synchronous: str = "FULL"
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._closed = False
        # isolation_level=None: no implicit transactions; _tx opens exactly one per event.
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.row_factory = sqlite3.Row
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a network filesystem without shared memory
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        with self._tx() as conn:
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
        if stored and stored[0] != self.run_id:
            log.info("journal %s: run %s follows run %s", self.path, self.run_id, stored[0])

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One event, one transaction: all of it is committed or none of it is."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close; the journal stays reopenable."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()

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

    def next_order_number(self) -> int:
        """1 + the highest order number this run has recorded (so it survives a restart)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(number) FROM orders WHERE run_id = ?", (self.run_id,)
            ).fetchone()
        return 1 + int(row[0] or 0)

    # -- events -------------------------------------------------------------------------------

    def record_session(self, **info: Any) -> None:
        """A session started or resumed: config hash, account, host/port, mode, time.

        ``time`` defaults to now; values that are not JSON (paths, datetimes) are stored as text.
        """
        time = utc_iso(info.pop("time", None) or dt.datetime.now(dt.UTC))
        text = json.dumps(info, default=str, sort_keys=True)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sessions (run_id, time, info) VALUES (?, ?, ?)",
                (self.run_id, time, text),
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
        """A bar the strategy saw. Again for the same ``(symbol, time)``: the latest values win
        (IB revises a bar that is still forming), never a second row."""
        values = [real(v) for v in (open, high, low, close, volume)]
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO bars (symbol, time, open, high, low, close, volume)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (symbol, time) DO UPDATE SET open = excluded.open,"
                " high = excluded.high, low = excluded.low, close = excluded.close,"
                " volume = excluded.volume",
                (symbol, utc_iso(time), *values),
            )

    def record_decision(
        self, time: Any, symbol: str, prediction: float, target: float, note: str = ""
    ) -> None:
        """What the model predicted and the target the strategy derived: the why of an order."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO decisions (run_id, time, symbol, prediction, target, note)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self.run_id, utc_iso(time), symbol, real(prediction), real(target), note),
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

        If the session dies between this and the send, the restart finds the order here and
        asks IB (by ``orderRef``) whether it arrived, instead of guessing. A ref recorded
        before is refused: that would be the same order twice.
        """
        run, number = split_ref(ref)
        now = now_iso()
        try:
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO orders (ref, run_id, number, symbol, action, quantity,"
                    " order_type, limit_price, stop_price, trail_percent, parent_ref,"
                    " ib_order_id, dry_run, status, filled, remaining, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'PendingSubmit', 0, ?, ?, ?)",
                    (
                        ref,
                        run or self.run_id,
                        number,
                        symbol,
                        action,
                        float(quantity),
                        order_type,
                        real(limit),
                        real(stop),
                        real(trail_percent),
                        parent_ref,
                        ib_order_id,
                        int(bool(dry_run)),
                        float(quantity),
                        now,
                        now,
                    ),
                )
                conn.execute(
                    "INSERT INTO order_status (ref, time, status, filled, remaining)"
                    " VALUES (?, ?, 'PendingSubmit', 0, ?)",
                    (ref, now, float(quantity)),
                )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"order {ref!r} is already in the journal {self.path}") from exc

    def set_ib_order_id(self, ref: str, ib_order_id: int) -> None:
        """IB's orderId once the client assigned it (it changes across client ids, the ref not)."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE orders SET ib_order_id = ?, updated = ? WHERE ref = ?",
                (int(ib_order_id), now_iso(), ref),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no order {ref!r} in the journal {self.path}")

    def record_status(
        self,
        ref: str,
        status: str,
        filled: float = 0.0,
        remaining: float | None = None,
        avg_price: float | None = None,
        why: str = "",
    ) -> None:
        """An order's new status, as it arrives; the order keeps the latest, the history all.

        IB repeats identical statuses; a repeat of the previous one adds no history row. A
        status for an order this journal never recorded (placed from TWS, another client) is
        kept in the history and logged: it is evidence, not noise.
        """
        now = now_iso()
        values = (status, float(filled), real(remaining), real(avg_price), why)
        with self._tx() as conn:
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
            cur = conn.execute(
                "UPDATE orders SET status = ?, filled = ?, remaining = ?, avg_price = ?, why = ?,"
                " updated = ? WHERE ref = ?",
                (*values, now, ref),
            )
        if cur.rowcount == 0:
            log.warning("status %s for order %r, which this journal never recorded", status, ref)

    def record_fill(
        self, exec_id: str, ref: str, symbol: str, time: Any, shares: float, price: float
    ) -> bool:
        """An execution (``shares`` signed: + buy, - sell). False if ``exec_id`` was known.

        IB re-sends executions after a reconnect and on ``reqExecutions``; keyed by ``execId``
        each counts once, so positions and cash never double.
        """
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO fills (exec_id, ref, symbol, time, shares, price)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (exec_id, ref, symbol, utc_iso(time), float(shares), float(price)),
            )
        return cur.rowcount == 1

    def record_commission(
        self, exec_id: str, commission: float, realized_pnl: float | None = None
    ) -> None:
        """The commission of execution ``exec_id``, before or after its fill arrives.

        Recorded again, the latest report wins (one row per execution). IB's "unset"
        realizedPNL (the largest double) is stored as NULL.
        """
        if realized_pnl is not None and abs(realized_pnl) >= UNSET_DOUBLE:
            realized_pnl = None
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO commissions (exec_id, commission, realized_pnl, time)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (exec_id) DO UPDATE SET"
                " commission = excluded.commission, realized_pnl = excluded.realized_pnl",
                (exec_id, float(commission), real(realized_pnl), now_iso()),
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
        """Whether execution ``exec_id`` is journaled."""
        return bool(self._rows("SELECT 1 FROM fills WHERE exec_id = ?", (exec_id,)))

    def commission(self, exec_id: str) -> float | None:
        """The commission journaled for ``exec_id``, None before its report arrived."""
        rows = self._rows("SELECT commission FROM commissions WHERE exec_id = ?", (exec_id,))
        return float(rows[0]["commission"]) if rows else None

    def known_exec_ids(self) -> set[str]:
        """The executions already journalled: on reconciliation, the others are new."""
        return {row["exec_id"] for row in self._rows("SELECT exec_id FROM fills")}

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
        with self._lock:
            spent = self._conn.execute("SELECT TOTAL(shares * price) FROM fills").fetchone()[0]
            paid = self._conn.execute("SELECT TOTAL(commission) FROM commissions").fetchone()[0]
        return float(start_cash) - float(spent) - float(paid)

    def report_frames(self, start_cash: float) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
        """``(returns, positions, transactions)`` for the run files, from one consistent read
        of bars, fills and commissions (see :func:`.journal_frames.report_frames`)."""
        with self._lock:  # no event lands between the queries
            bars = self._rows("SELECT symbol, time, close FROM bars ORDER BY time")
            fills = self.fills()
            orphans = self._conn.execute(
                "SELECT c.time, c.commission FROM commissions c"
                " LEFT JOIN fills f USING (exec_id) WHERE f.exec_id IS NULL"
            ).fetchall()
        return report_frames(bars, fills, [(t, c) for t, c in orphans], start_cash)

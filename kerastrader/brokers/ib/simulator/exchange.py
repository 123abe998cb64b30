"""The IB-like market: 5-second real-time bars on an accelerated exchange clock, RTH sessions.

With ``SimulatedGateway(..., ib=IBLike())`` the replay is no longer one file bar per
message. Every file bar becomes its session's (or, for intraday files, its own) 5-second
bars (:mod:`.intraday`), and the clock walks those 5-second steps through the exchange's
regular hours, skipping the nights and the days without a session. A step is still released
per ``reqCurrentTime`` (lockstep) or every ``1 / speed`` seconds; each step first matches
working orders against the step's 5-second bar, then sends the bar, stamped with its start
as IB does. ``currentTime`` answers the end of the last released bar; between sessions it
is the last close.

Connectivity (:meth:`ExchangeMarket.connectivity`): after 1100 no market data is sent and
order requests wait, while orders at the exchange keep working and their reports are
delayed until the restore (as IB documents for its resets); 1102 resumes the subscriptions,
1101 drops them (the client must subscribe again). The socket stays open throughout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kerastrader.brokers.ib.simulator.clock import ib_time
from kerastrader.brokers.ib.simulator.hmds import HistoricalService
from kerastrader.brokers.ib.simulator.intraday import BAR, Calendar, Path
from kerastrader.brokers.ib.simulator.layouts import to_int
from kerastrader.brokers.ib.simulator.market import Market
from kerastrader.brokers.ib.simulator.scenarios import (
    COMPETING_TEXT,
    CONNECTIVITY_TEXTS,
    NO_DEFINITION_TEXT,
    NOT_SUBSCRIBED_TEXT,
    WHAT_TO_SHOW_TEXT,
    IBLike,
)
from kerastrader.brokers.ib.wire import In, Out

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.gateway import Connection, SimulatedGateway

log = logging.getLogger(__name__)

REALTIME_WHAT_TO_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK")
HELD_OUT = frozenset({Out.ORDER_STATUS, Out.OPEN_ORDER, Out.EXECUTION_DATA,
                      Out.COMMISSION_REPORT})  # fmt: skip
HELD_IN = frozenset({In.PLACE_ORDER, In.CANCEL_ORDER, In.REQ_GLOBAL_CANCEL})


class ExchangeMarket(Market):
    """:class:`Market` on an exchange clock of 5-second steps (see the module docstring).

    Per symbol ``starts``/``lengths`` give each file row's period (epoch seconds): a daily
    row is its date's session, an intraday row lasts the file's bar spacing. ``forming``:
    symbol -> (row, pieces released) of the row in progress.
    """

    def __init__(
        self, gateway: SimulatedGateway, bars: dict[str, pd.DataFrame], history: int, ib: IBLike
    ) -> None:
        super().__init__(gateway, bars, history)
        self.ib = ib
        self.primary = ib.primary_exchange
        self.calendar = Calendar(ib.time_zone, ib.open, ib.close)
        self.starts: dict[str, np.ndarray] = {}
        self.lengths: dict[str, np.ndarray] = {}
        for sym in self.symbols:
            self.starts[sym], self.lengths[sym] = self.geometry(sym)
        self.session_days = {
            sym: sorted({self.calendar.day_of(t) for t in self.starts[sym]}) for sym in self.symbols
        }
        pending = [
            int(self.starts[s][self.history])
            for s in self.symbols
            if self.history < len(self.starts[s])
        ]
        self.start_epoch = min(pending) if pending else self.end_of_data()
        self.plan_steps(pending)
        self.forming: dict[str, tuple[int, int] | None] = dict.fromkeys(self.symbols)
        self.current_bars: dict[str, tuple[int, float, float, float, float, float]] = {}
        self.paths: dict[tuple[str, int], Path] = {}
        self.hmds = HistoricalService(self)
        self.rt_requests = 0  # reqRealTimeBars received
        self.online = True  # False between 1100 and 1101/1102
        self.held_out: list[tuple[Connection, tuple]] = []
        self.held_in: list[tuple[Connection, list[str]]] = []

    # ------------------------------------------------------------------ geometry

    def geometry(self, sym: str) -> tuple[np.ndarray, np.ndarray]:
        d = self.data[sym]
        if self.daily[sym]:
            spans = [self.calendar.session(ts.date()) for ts in d["index"]]
            starts = np.array([a for a, _ in spans], dtype=np.int64)
            return starts, np.array([b - a for a, b in spans], dtype=np.int64)
        times = d["time"]
        spacing = int(np.median(np.diff(times))) if len(times) > 1 else 60
        spacing = max(BAR, spacing - spacing % BAR)
        return times.astype(np.int64), np.full(len(times), spacing, dtype=np.int64)

    def end_of_data(self) -> int:
        ends = [
            int(self.starts[s][-1] + self.lengths[s][-1])
            for s in self.symbols
            if len(self.starts[s])
        ]
        return max(ends) if ends else 0

    def plan_steps(self, pending: list[int]) -> None:
        """The sessions the clock walks (from the first replayed row on) and their steps."""
        days: set = set()
        for sym in self.symbols if pending else []:
            days |= {self.calendar.day_of(t) for t in self.starts[sym] if t >= self.start_epoch}
        firsts, counts = [], []
        for day in sorted(days):
            open_, close = self.calendar.session(day)
            first = max(open_, self.start_epoch)
            first += (-(first - open_)) % BAR
            if close > first:
                firsts.append(first)
                counts.append((close - first) // BAR)
        self.session_first = np.array(firsts, dtype=np.int64)
        self.session_base = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.total_steps = int(self.session_base[-1])

    @property
    def done(self) -> bool:
        return self.step + 1 >= self.total_steps

    def session_of(self, step: int) -> int:
        return int(np.searchsorted(self.session_base, step, side="right") - 1)

    def step_time(self, step: int) -> int:
        k = self.session_of(step)
        return int(self.session_first[k] + BAR * (step - self.session_base[k]))

    def row_at(self, sym: str, t: int) -> int | None:
        starts = self.starts[sym]
        i = int(np.searchsorted(starts, t, side="right")) - 1
        if i < 0 or t >= starts[i] + self.lengths[sym][i]:
            return None
        return i

    def row_ohlcv(self, sym: str, i: int) -> tuple[float, float, float, float, float]:
        d = self.data[sym]
        return tuple(float(d[k][i]) for k in ("open", "high", "low", "close", "volume"))

    def path(self, sym: str, i: int) -> Path:
        key = (sym, i)
        path = self.paths.get(key)
        if path is None:
            if len(self.paths) > 4096:
                self.paths.clear()
            pieces = int(self.lengths[sym][i]) // BAR
            path = self.paths[key] = Path(self.row_ohlcv(sym, i), pieces, self.min_tick(sym))
        return path

    def released(self, sym: str, i: int) -> int:
        """How many of row ``i``'s 5-second pieces the clock has released."""
        forming = self.forming[sym]
        if forming is not None and forming[0] == i:
            return forming[1]
        if i < self.replay_index[sym]:
            return int(self.lengths[sym][i]) // BAR
        return 0

    # ------------------------------------------------------------------ clock

    def now(self) -> int:
        if self.step >= 0:
            return self.step_time(self.step) + BAR
        return self.start_epoch

    def last_close(self, symbol: str) -> float | None:
        forming = self.forming[symbol]
        if forming is not None:
            return self.path(symbol, forming[0]).price(forming[1])
        i = self.replay_index[symbol]
        return float(self.data[symbol]["close"][i - 1]) if i else None

    def hours_fields(self, symbol: str) -> list[str]:
        hours = self.calendar.hours_text(
            self.session_days[symbol], self.calendar.day_of(self.now())
        )
        return [self.ib.time_zone, hours, hours]

    def release_step(self) -> None:
        """One 5-second step: session bookkeeping, fills against the step's bars, the bars."""
        before = self.session_of(self.step) if self.step >= 0 else None
        self.step += 1
        stamp = self.step_time(self.step)
        session = self.session_of(self.step)
        if before is not None and session != before:
            self.gw.book.session_closed()
        if session != before:
            self.gw.book.session_opened()
        bars: dict[str, tuple[int, float, float, float, float, float]] = {}
        changed: set[str] = set()
        for sym in self.symbols:
            i = self.row_at(sym, stamp)
            if i is None:
                continue
            path = self.path(sym, i)
            j = (stamp - int(self.starts[sym][i])) // BAR
            bar = path.bar(j)
            bars[sym] = (stamp, *bar)
            _, high, low, _, _ = path.ohlcv
            changed |= self.gw.engine.match(sym, *bar, stamp, cap=(high, low))
            with self.gw.lock:
                self.replay_index[sym] = max(self.replay_index[sym], i)
                if j + 1 >= path.pieces:
                    self.replay_index[sym] = i + 1
                    self.forming[sym] = None
                else:
                    self.forming[sym] = (i, j + 1)
        self.current_bars = bars
        self.gw.book.step_done()
        if changed:
            self.gw.ledger.push(changed)
        self.deliver(list(bars))
        log.debug("step %s (%s): %s", self.step, ib_time(stamp), sorted(bars))
        if self.done:
            log.info("replay finished after %s steps", self.total_steps)
            self.gw.finished.set()

    def maybe_release(self) -> None:
        """lockstep=True: release 5-second steps up to the next barrier (lockstep_seconds)."""
        if not (self.release_wanted and self.subscribed() and not self.done):
            return
        self.release_wanted = False
        self.release_step()
        while not self.done and not self.at_barrier():
            self.release_step()
        self.awaiting_ack = True

    def at_barrier(self) -> bool:
        """Whether the clock stands at the close or at a multiple of lockstep_seconds."""
        if not self.in_session():
            return True
        open_, _ = self.calendar.session(self.calendar.day_of(self.now() - 1))
        return (self.now() - open_) % max(BAR, self.ib.lockstep_seconds) == 0

    def bar(self, symbol: str) -> tuple[int, float, float, float, float, float]:
        return self.current_bars[symbol]

    def in_session(self) -> bool:
        """Whether an order arriving now works at once (the next 5-second bar follows on)."""
        return not self.done and self.step_time(self.step + 1) == self.now()

    def next_open(self) -> int:
        """When the next 5-second bar starts (the next open, between sessions)."""
        return self.step_time(self.step + 1) if not self.done else self.now()

    def deliver(self, symbols: list[str]) -> None:
        if self.online:
            super().deliver(symbols)
            return
        self.undelivered = set()  # lost: IB does not replay market data after an outage
        self.step_conns = set()

    # ------------------------------------------------------------------ requests

    def on_req_historical_data(self, conn: Connection, fields: list[str]) -> None:
        self.hmds.on_request(conn, fields)

    def on_req_real_time_bars(self, conn: Connection, fields: list[str]) -> None:
        req_id = to_int(fields[2])
        symbol = self.lookup(fields[3:15])
        bar_size, what = fields[15], fields[16].upper()
        self.rt_requests += 1
        if symbol is None:
            self.gw.error(conn, req_id, 200, NO_DEFINITION_TEXT)
        elif symbol in self.ib.no_permissions:
            self.gw.error(conn, req_id, 354, NOT_SUBSCRIBED_TEXT)
        elif symbol in self.ib.competing_session:
            self.gw.error(conn, req_id, 10197, COMPETING_TEXT)
        elif what not in REALTIME_WHAT_TO_SHOW:
            self.gw.error(conn, req_id, 321, WHAT_TO_SHOW_TEXT)
        else:
            if bar_size != str(BAR):
                log.warning("reqRealTimeBars barSize %s: IB sends 5-second bars only", bar_size)
            self.subscribe(conn, req_id, symbol)

    # ------------------------------------------------------------------ connectivity

    def connectivity(self, code: int) -> None:
        """Send 1100 (lost), 1101 (restored, data lost) or 1102 (restored, data kept)."""
        if code not in CONNECTIVITY_TEXTS:
            raise ValueError(f"connectivity code {code}: expected 1100, 1101 or 1102")
        for conn in self.gw.ready_conns():
            self.gw.error(conn, -1, code, CONNECTIVITY_TEXTS[code])
        if code == 1100:
            self.online = False
            return
        self.online = True
        if code == 1101:
            for conn in self.gw.ready_conns():
                conn.bar_subs.clear()
        held_out, self.held_out = self.held_out, []
        for conn, message in held_out:
            self.gw.send(conn, *message)
        held_in, self.held_in = self.held_in, []
        for conn, fields in held_in:
            self.gw.dispatch(conn, fields)

    def hold_out(self, conn: Connection, fields: tuple[Any, ...]) -> bool:
        """During an outage: keep order reports for the restore. True if held."""
        if self.online or fields[0] not in HELD_OUT:
            return False
        self.held_out.append((conn, fields))
        return True

    def hold_in(self, conn: Connection, fields: list[str]) -> bool:
        """During an outage: order requests wait for the restore. True if held."""
        if self.online or to_int(fields[0]) not in HELD_IN:
            return False
        self.held_in.append((conn, fields))
        return True

"""A live Backtrader data feed from IB: a historical warm-up, then real-time bars.

At start the feed backfills ``warmup`` bars of the strategy's timeframe (feature look-back plus
model window) from IB's history, asked for with the model's bar size, the data IB serves for
the contract (MIDPOINT for forex) and ``useRTH`` as the training data (regular hours by
default), so the first live bar already has a prediction. Then it subscribes to IB's 5-second
real-time bars and aggregates them into the strategy's timeframe on the exchange's clock
(:mod:`.hours`: a daily bar closes at the session's close, intraday bars are cut from the
open): a bar is handed to Backtrader as soon as the last real-time bar of its period has
arrived, never earlier (a partial bar would be a look-ahead in reverse: the backtest never
sees one).

IB's history with ``endDateTime=""`` ends with the bar still forming. That bar is never
delivered as complete: at start the feed asks IB's clock (``reqCurrentTime``) and a last bar
whose period has not ended becomes the start of the aggregate the real-time bars complete;
after a reconnect (where asking the clock would be one request more in a hurry) the last
backfilled bar is always treated that way, and delivered once a real-time bar shows its
period is over.

``islive()`` is true, so Backtrader turns off preloading and the vectorised pass and runs
``KerasIndicator`` bar by bar, exactly as a ``runonce=False`` backtest does.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import threading
import time
from collections import deque

import backtrader as bt

from kerastrader.brokers.ib.contracts import symbol_of, what_to_show
from kerastrader.brokers.ib.hours import ExchangeHours
from kerastrader.brokers.ib.store import Bar, HistoryRefused, IBStore
from kerastrader.errors import KerastraderError

log = logging.getLogger(__name__)

DAY = 86_400
# IB's legal barSizeSetting spellings (below a day), by bar length in seconds.
BAR_SIZES = {
    1: "1 secs", 5: "5 secs", 10: "10 secs", 15: "15 secs", 30: "30 secs",
    60: "1 min", 120: "2 mins", 180: "3 mins", 300: "5 mins", 600: "10 mins", 900: "15 mins",
    1200: "20 mins", 1800: "30 mins", 3600: "1 hour", 7200: "2 hours", 10800: "3 hours",
    14400: "4 hours", 28800: "8 hours",
}  # fmt: skip


def bucket_seconds(timeframe: int, compression: int) -> int:
    if timeframe == bt.TimeFrame.Days:
        return DAY * compression
    if timeframe == bt.TimeFrame.Minutes:
        return 60 * compression
    if timeframe == bt.TimeFrame.Seconds:
        return compression
    raise ValueError(f"unsupported timeframe {bt.TimeFrame.getname(timeframe, compression)}")


def history_request(warmup: int, bucket: int, session: float = DAY) -> tuple[str, str]:
    """IB's (durationStr, barSizeSetting) for at least ``warmup`` bars of ``bucket`` seconds.

    IB's durations are calendar time, while bars exist only in sessions: ``session`` is the
    length of one (6.5 h for US stocks in regular hours, a day with extended hours or for
    markets that never close), so N intraday bars need ``N * bucket / session`` sessions, and
    sessions become calendar days at 7 for 5 plus a tenth and a few days for holidays."""
    if bucket >= DAY:
        sessions = warmup
    elif bucket not in BAR_SIZES:
        legal = ", ".join(f"{s} s" for s in BAR_SIZES)
        raise KerastraderError(f"IB has no {bucket}-second bars; bar sizes it serves: {legal}")
    else:
        per_session = max(1, math.floor(max(session, bucket) / bucket))
        sessions = math.ceil(warmup / per_session)
        if sessions <= 1 and warmup * bucket < min(session, DAY):
            return f"{max(warmup * bucket * 2, 60)} S", BAR_SIZES[bucket]
    days = math.ceil(sessions * 7 / 5 * 1.1) + 4  # calendar days for that many sessions
    duration = f"{math.ceil(days / 365)} Y" if days > 365 else f"{days} D"
    return duration, "1 day" if bucket >= DAY else BAR_SIZES[bucket]


class Aggregator:
    """Real-time bars in, completed bars of ``bucket`` seconds out, cut on the exchange's
    clock (``hours``; without one, on UTC)."""

    def __init__(self, bucket: int, bar_seconds: int, hours: ExchangeHours | None = None) -> None:
        self.bucket = bucket
        self.bar_seconds = bar_seconds
        self.hours = hours or ExchangeHours(None, [])
        self.current: Bar | None = None
        self.period = None

    def seed(self, bar: Bar) -> None:
        """Start the current period with a history bar that may still be forming (IB's last
        history bar): the real-time bars complete it, and it is delivered when they do."""
        self.period = self.hours.history_period(bar.time, self.bucket)
        self.current = Bar(bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume)

    def add(self, bar: Bar) -> list[Bar]:
        """Add one real-time bar; return the aggregates it completes, oldest first (two when
        it opens a new period after a period whose last real-time bar never came, and
        completes the new one too)."""
        period = self.hours.period(bar.time, self.bucket)
        done: list[Bar] = []
        if self.current is not None and period.start != self.period.start:
            done.append(self.current)  # a bar of a later period: close the old one
            self.current = None
        if self.current is None:
            self.period = period
            self.current = Bar(float(period.stamp), bar.open, bar.high, bar.low, bar.close,
                               bar.volume)  # fmt: skip
        else:
            c = self.current
            c.high, c.low = max(c.high, bar.high), min(c.low, bar.low)
            c.close = bar.close
            c.volume += bar.volume
        if bar.time + self.bar_seconds >= self.period.end:
            done.append(self.current)
            self.current = None
        return done


class IBData(bt.feed.DataBase):
    params = (
        ("store", None),  # IBStore
        ("contract", None),  # an ib_async Contract
        ("warmup", 200),  # historical bars before the first live one
        ("bar_seconds", 5),  # real-time bar size (IB: 5; the simulator: the file's bar size)
        ("end", None),  # threading.Event: no more live bars will come (simulation finished)
        ("poll", 0.5),  # seconds to wait for a live bar before returning control
        ("journal", None),
        ("barrier", True),  # tell the (simulated) gateway when a bar is done; one feed does
        ("idle_exit", 0.0),  # > 0: end the feed after this many seconds without a live bar
        ("regular_hours", True),  # useRTH for history and real-time bars, as the training data
        ("group", None),  # BarGroup: the book's feeds deliver aligned bars, one ack per bar
    )

    def islive(self) -> bool:
        return True

    def start(self) -> None:
        super().start()
        store: IBStore = self.p.store
        self.bucket = bucket_seconds(self.p.timeframe, self.p.compression)
        if self.bucket > DAY:
            raise KerastraderError("a live feed builds bars of up to one day, not several")
        self.contract = store.qualify(self.p.contract)
        store.names[getattr(self.contract, "conId", 0)] = self._name
        self.what = what_to_show(self.contract)
        self.rth = bool(self.p.regular_hours)
        self.hours = ExchangeHours.from_details(store.details.get(self.contract.conId), self.rth)
        duration, size = history_request(int(self.p.warmup), self.bucket,
                                         self.hours.session_seconds())  # fmt: skip
        history = store.history(self.contract, duration, size, what=self.what, use_rth=self.rth)
        self.agg = Aggregator(self.bucket, int(self.p.bar_seconds), self.hours)
        now = store.current_time()  # IB's clock, not ours: is the last bar's period over?
        if history and self.hours.history_period(history[-1].time, self.bucket).end > now:
            self.agg.seed(history.pop())  # still forming: the real-time bars complete it
            log.info("%s: IB's last history bar is still forming; completing it live",
                     self._name)  # fmt: skip
        self._backfill: deque[Bar] = deque(history[-int(self.p.warmup) :] if history else [])
        log.info("%s (%s): %d warm-up bars of %s from IB history (%s, %s)", self._name,
                 symbol_of(self.contract), len(self._backfill), size, self.what,
                 "regular hours" if self.rth else "with extended hours")  # fmt: skip
        self.last_time = -math.inf  # the time of the last bar handed to Backtrader
        self.live: queue.Queue | None = None
        if self.p.group is None or not store.lockstep:
            self.subscribe_live()
        else:  # a lockstep simulated gateway: the book subscribes once every feed has started
            self.p.group.defer(self)
        self.end_event: threading.Event = self.p.end or threading.Event()
        self.delivered_live = 0
        self._barrier_for = 0
        self._last_arrival = time.monotonic()
        self.arrived = 0.0

    def subscribe_live(self) -> None:
        """Subscribe to the contract's real-time bars (at start, so no bar is missed)."""
        self.live = self.p.store.subscribe(self._name, self.contract, int(self.p.bar_seconds),
                                           what=self.what, use_rth=self.rth)  # fmt: skip

    def backfill_after_reconnect(self) -> None:
        """Bars completed while disconnected come from history, then live bars resume."""
        store: IBStore = self.p.store
        duration, size = history_request(50, self.bucket, self.hours.session_seconds())
        try:
            bars = store.history(self.contract, duration, size, what=self.what, use_rth=self.rth)
        except HistoryRefused as exc:  # live bars go on; the gap stays a gap
            log.error("%s: no backfill after the reconnect: %s", self._name, exc)
            return
        if bars and bars[-1].time > self.last_time:
            self.agg.seed(bars.pop())  # may still be forming: delivered when live bars say so
        for bar in bars:
            if bar.time > self.last_time:
                self._backfill.append(bar)

    def _deliver(self, bar: Bar) -> bool:
        if bar.time <= self.last_time:
            return False  # a bar seen before (overlap of backfill and live): skip
        self.last_time = bar.time
        when = dt.datetime.fromtimestamp(bar.time, dt.UTC).replace(tzinfo=None)
        self.lines.datetime[0] = bt.date2num(when)
        self.lines.open[0] = bar.open
        self.lines.high[0] = bar.high
        self.lines.low[0] = bar.low
        self.lines.close[0] = bar.close
        self.lines.volume[0] = bar.volume
        self.lines.openinterest[0] = 0.0
        if self.p.journal is not None:
            self.p.journal.record_bar(self._name, when, bar.open, bar.high, bar.low, bar.close,
                                      bar.volume)  # fmt: skip
        return True

    def _load(self) -> bool | None:
        if self.live is None:
            self.p.group.subscribe_deferred()
        while self._backfill:
            if self._deliver(self._backfill.popleft()):
                return True
        store: IBStore = self.p.store
        group = self.p.group
        if self.p.barrier and self.delivered_live > self._barrier_for:
            self._barrier_for = self.delivered_live
            if group is None or group.acknowledge(self.last_time):
                store.barrier()  # done with the last bar: the simulator may send the next
        while True:
            if store.fatal is not None:  # the session cannot go on: end it (with its report)
                log.error("%s: no more bars: %s", self._name, store.fatal)
                return False
            try:
                rt = self.live.get(timeout=self.p.poll)
            except queue.Empty:
                if self.end_event.is_set() and self.live.empty() and not store.reports_due():
                    return False  # (a fill's commission report still due is waited for)
                idle = time.monotonic() - self._last_arrival
                if self.p.idle_exit and idle > self.p.idle_exit:
                    log.info("%s: no bar for %.0f s: ending the session", self._name, idle)
                    return False
                if group is not None and group.should_wait(self.last_time):
                    continue  # a peer delivered this round's bar: ours is on its way
                return None  # no bar yet: Backtrader polls again
            self._last_arrival = time.monotonic()
            completed = self.agg.add(rt)
            self._backfill.extend(completed[1:])  # delivered on the next calls, in order
            if completed:  # decide with this bar's fills applied, as a backtest does
                store.await_reports()
            if completed and self._deliver(completed[0]):
                self.arrived = rt.arrived  # when the bar's last piece reached us
                self.delivered_live += 1
                if group is not None:
                    if group.latest > self.last_time:
                        log.warning("%s: its bar of %s came after the book's next bar; the "
                                    "book decided without it", self._name,
                                    dt.datetime.fromtimestamp(self.last_time, dt.UTC))  # fmt: skip
                    group.delivered(self.last_time)
                return True
            if completed and self.p.barrier:  # a live bar a backfill delivered already: done
                self.delivered_live += 1
                if group is not None:  # acknowledged with the book's, when asked for the next
                    continue
                self._barrier_for = self.delivered_live
                store.barrier()

"""IB's Historical Market Data Service, as the IB-like gateway answers ``reqHistoricalData``.

- Bars are built from the 5-second pieces the clock has released (:mod:`.intraday`), so with
  ``endDateTime=""`` the last bar is the one still forming: today's daily bar carries the
  session so far (partial volume and range), an intraday bar the part of its period so far.
- Daily bars are dated ``yyyymmdd``; intraday bars start at the session open plus whole bar
  sizes, dated ``yyyymmdd hh:mm:ss <time zone>`` (``formatDate=1``) or epoch seconds (2).
- IB's pacing rules for bars of 30 seconds or less (its "Historical Data Limitations"): no
  identical request within 15 s, fewer than six for one contract and tick type within 2 s,
  at most 60 in ten minutes (BID_ASK counts twice); a breach gets 162 "Historical data
  request pacing violation".
- No market-data permissions: 162 "No market data permissions for <exchange> STK". Nothing to
  send (unknown data, or a window without bars): 162 "HMDS query returned no data".
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from kerastrader.brokers.ib.simulator.clock import duration_seconds, ib_time
from kerastrader.brokers.ib.simulator.intraday import BAR, bar_size_seconds, combine
from kerastrader.brokers.ib.simulator.layouts import to_int
from kerastrader.brokers.ib.simulator.scenarios import (
    BAR_SIZE_TEXT,
    HMDS_NO_DATA_TEXT,
    HMDS_NO_FOREX_TRADES_TEXT,
    HMDS_PACING_TEXT,
    HMDS_PERMISSIONS_TEXT,
    NO_DEFINITION_TEXT,
)
from kerastrader.brokers.ib.wire import Out

if TYPE_CHECKING:
    from kerastrader.brokers.ib.simulator.exchange import ExchangeMarket
    from kerastrader.brokers.ib.simulator.gateway import Connection

DAY = 86_400
OHLCV = tuple[float, float, float, float, float]


def parse_end(text: str) -> int:
    """endDateTime: ``yyyymmdd hh:mm:ss [zone]`` (UTC without a zone), ``yyyymmdd-hh:mm:ss``
    (UTC) or ``yyyymmdd`` (midnight UTC), in epoch seconds."""
    text = text.strip()
    zone = dt.UTC
    if "-" in text:
        day, _, clock = text.partition("-")
        text = f"{day} {clock}"
    parts = text.split()
    if len(parts) >= 3:
        zone = dt.UTC if parts[2].upper() in ("UTC", "GMT") else ZoneInfo(parts[2])
    fmt = "%Y%m%d %H:%M:%S" if len(parts) >= 2 else "%Y%m%d"
    when = dt.datetime.strptime(" ".join(parts[:2]), fmt).replace(tzinfo=zone)
    return int(when.timestamp())


class Pacing:
    """IB's three pacing rules for small bars, on the wall clock (``time.monotonic``)."""

    def __init__(self) -> None:
        self.recent: collections.deque[tuple[float, tuple, tuple]] = collections.deque()

    def violated(self, key: tuple, contract: tuple, weight: int) -> bool:
        now = time.monotonic()
        while self.recent and now - self.recent[0][0] > 600:
            self.recent.popleft()
        identical = any(k == key and now - t < 15 for t, k, _ in self.recent)
        same = sum(1 for t, _, c in self.recent if c == contract and now - t < 2)
        if identical or same + weight >= 6 or len(self.recent) + weight > 60:
            return True
        for _ in range(weight):
            self.recent.append((now, key, contract))
        return False


class HistoricalService:
    """Answers reqHistoricalData for an :class:`ExchangeMarket` (see the module docstring)."""

    def __init__(self, market: ExchangeMarket) -> None:
        self.market = market
        self.pacing = Pacing()
        # every request as received: symbol, whatToShow, barSize, duration, useRTH
        self.requests: list[dict[str, str]] = []

    def on_request(self, conn: Connection, fields: list[str]) -> None:
        m, gw = self.market, self.market.gw
        req_id = to_int(fields[1])
        m.hist_requests += 1
        symbol = m.lookup(fields[2:14])
        end_text, size_text, duration = fields[15], fields[16], fields[17]
        what, format_date = fields[19].upper(), to_int(fields[20], 1)
        bucket = bar_size_seconds(size_text)
        self.requests.append({"symbol": symbol or fields[3], "what": what, "bar_size": size_text,
                              "duration": duration, "use_rth": fields[18]})  # fmt: skip
        if m.hist_requests in gw.faults.pacing_violation_on:
            gw.error(conn, req_id, 162, HMDS_PACING_TEXT)
            return
        if symbol is None:
            gw.error(conn, req_id, 200, NO_DEFINITION_TEXT)
            return
        if bucket is None:
            gw.error(conn, req_id, 321, f"{BAR_SIZE_TEXT} ({size_text!r})")
            return
        contract = m.contract(symbol)
        if contract["secType"] == "CASH" and what == "TRADES":  # IB has no trades for forex
            text = HMDS_NO_FOREX_TRADES_TEXT.format(base=contract["symbol"], duration=duration)
            gw.error(conn, req_id, 162, text)
            return
        if symbol in m.ib.no_permissions:
            gw.error(conn, req_id, 162, HMDS_PERMISSIONS_TEXT.format(exchange=m.primary))
            return
        if m.ib.pacing and bucket <= 30:
            key = (symbol, end_text, duration, size_text, what, fields[18])
            if self.pacing.violated(key, (symbol, what), 2 if what == "BID_ASK" else 1):
                gw.error(conn, req_id, 162, HMDS_PACING_TEXT)
                return
        end = parse_end(end_text) if end_text else m.now()
        end = min(end, m.now())
        start = end - duration_seconds(duration) if duration else -math.inf
        bars = [] if symbol in m.ib.no_data else self.bars(symbol, bucket, start, end)
        if not bars:
            gw.error(conn, req_id, 162, HMDS_NO_DATA_TEXT.format(symbol=symbol, exchange="SMART"))
            return
        out: list[Any] = [Out.HISTORICAL_DATA, req_id]
        out += [ib_time(int(max(start, 0))), ib_time(end), len(bars)]
        for stamp, (o, h, lo, c, v) in bars:
            out += [self.date_text(stamp, bucket, format_date), o, h, lo, c, v]
            out += [(h + lo + c) / 3, 1 if v else 0]  # wap, count
        gw.send(conn, *out)

    def date_text(self, stamp: int, bucket: int, format_date: int) -> str:
        cal = self.market.calendar
        if bucket >= DAY:
            return cal.day_of(stamp).strftime("%Y%m%d")
        if format_date == 2:
            return str(stamp)
        return cal.local(stamp).strftime("%Y%m%d %H:%M:%S ") + cal.time_zone

    def bars(self, symbol: str, bucket: int, start: float, end: int) -> list[tuple[int, OHLCV]]:
        """(bar start, OHLCV) of every bar starting in (start, end), oldest first."""
        cal = self.market.calendar
        out = []
        for day in self.market.session_days[symbol]:
            open_, close = cal.session(day)
            if open_ >= end or close <= start:
                continue
            if bucket >= DAY:
                periods = [(open_, close)] if open_ >= start else []
            else:
                periods = [
                    (t, min(t + bucket, close))
                    for t in range(open_, close, bucket)
                    if start <= t < end
                ]
            for t0, t1 in periods:
                bar = self.aggregate(symbol, t0, t1)
                if bar is not None:
                    out.append((t0, bar))
        return out

    def aggregate(self, symbol: str, t0: int, t1: int) -> OHLCV | None:
        """The released 5-second pieces of ``symbol`` in [t0, t1) as one bar, or None."""
        m = self.market
        starts, lengths = m.starts[symbol], m.lengths[symbol]
        first = max(int(np.searchsorted(starts, t0, side="right")) - 1, 0)
        last = int(np.searchsorted(starts, t1, side="left"))
        parts = []
        for i in range(first, last):
            rs, pieces = int(starts[i]), int(lengths[i]) // BAR
            j0 = max(0, -(-(t0 - rs) // BAR))
            j1 = min(pieces, -(-(t1 - rs) // BAR), m.released(symbol, i))
            if j1 <= j0:
                continue
            if j0 == 0 and j1 == pieces:
                parts.append(m.row_ohlcv(symbol, i))  # the whole file bar, exactly
            else:
                parts.append(m.path(symbol, i).span(j0, j1))
        return combine(parts) if parts else None

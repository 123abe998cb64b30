"""The exchange's clock for a live feed: which bar period a 5-second bar belongs to.

Why: IB's real-time bars are 5-second bars only, so a daily, hourly or N-minute strategy gets
its bars by aggregating them, and a bar must close where the training data's bars close: a
daily bar at the session's close (not at UTC midnight, which for a US stock is hours after
the close and, for the next 5-second bar, the next morning), an intraday bar at the session
open plus whole bar lengths (as IB's own historical bars are cut), the last one of a day cut
short at the close.

The sessions come from IB's contract details: ``timeZoneId`` and ``liquidHours`` (regular
trading hours, the default, as the training data) or ``tradingHours`` (with the extended
hours), in IB's ``yyyymmdd:hhmm-yyyymmdd:hhmm;yyyymmdd:CLOSED`` layout. IB lists about a week
ahead; for a day past the list the most recent listed session's local hours are used (a
session that outlives the list should re-read the details; a holiday there is then only
seen as a day without bars, which produces no bar). Without contract details (no time
zone) periods are cut on UTC, the old behaviour.

A daily bar is stamped with its session's date at midnight UTC, as IB dates daily history
bars (``yyyymmdd``) and as the training files date them; an intraday bar with its start.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

DAY = 86_400


@dataclass(frozen=True)
class Period:
    """One bar's period, epoch seconds: ``[start, end)``; ``stamp`` is the bar's time."""

    start: float
    end: float
    stamp: float


def parse_hours(text: str, zone: dt.tzinfo) -> list[tuple[float, float]]:
    """IB's hours text as ``(open, close)`` epoch pairs, oldest first (CLOSED days left out).

    Both of IB's layouts are read: ``20240722:0930-20240722:1600`` (current) and
    ``20090507:0930-1600`` (older, one date, possibly several ranges split by commas)."""
    out: list[tuple[float, float]] = []
    for part in (text or "").split(";"):
        part = part.strip()
        if not part or "CLOSED" in part:
            continue
        day, _, ranges = part.partition(":")
        for span in ranges.split(","):
            a, _, b = span.partition("-")
            if not a or not b:
                continue
            a_day, a_clock = (day, a) if ":" not in a else a.split(":")
            b_day, b_clock = (day, b) if ":" not in b else b.split(":")
            try:
                start = dt.datetime.strptime(f"{a_day}{a_clock}", "%Y%m%d%H%M")
                end = dt.datetime.strptime(f"{b_day}{b_clock}", "%Y%m%d%H%M")
            except ValueError:
                log.warning("unreadable trading hours %r from IB: ignored", span)
                continue
            out.append(
                (start.replace(tzinfo=zone).timestamp(), end.replace(tzinfo=zone).timestamp())
            )
    return sorted(out)


class ExchangeHours:
    """Sessions of one contract on its exchange's clock (see the module docstring)."""

    def __init__(self, zone: dt.tzinfo | None, sessions: list[tuple[float, float]]) -> None:
        self.zone = zone
        self.sessions = sessions
        if sessions:
            a, b = sessions[-1]
            local_a = dt.datetime.fromtimestamp(a, zone)
            local_b = dt.datetime.fromtimestamp(b, zone)
            self.typical = (local_a.time(), local_b.time(), (local_b.date() - local_a.date()).days)
        else:
            self.typical = None

    @classmethod
    def from_details(cls, details: Any, regular_hours: bool = True) -> ExchangeHours:
        """From ib_async ContractDetails (None or no time zone: UTC, no sessions)."""
        name = getattr(details, "timeZoneId", "") or ""
        try:
            zone = ZoneInfo(name) if name else None
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("IB's time zone %r is unknown here: bars are cut on UTC", name)
            zone = None
        if zone is None:
            return cls(None, [])
        text = getattr(details, "liquidHours" if regular_hours else "tradingHours", "") or ""
        return cls(zone, parse_hours(text, zone))

    def session_at(self, epoch: float) -> tuple[float, float] | None:
        """The session containing ``epoch``: listed, else the typical hours of its local day."""
        for a, b in self.sessions:
            if a <= epoch < b:
                return a, b
        if self.typical is None or (self.sessions and epoch < self.sessions[-1][1]):
            return None  # before the end of the list and in none of its sessions
        open_, close, spans = self.typical
        local = dt.datetime.fromtimestamp(epoch, self.zone).date()
        for day in (local, local - dt.timedelta(days=1)):
            a = dt.datetime.combine(day, open_, tzinfo=self.zone).timestamp()
            b = dt.datetime.combine(day + dt.timedelta(days=spans), close, tzinfo=self.zone)
            if a <= epoch < b.timestamp():
                return a, b.timestamp()
        return None

    def period(self, epoch: float, bucket: int) -> Period:
        """The period of a bar of ``bucket`` seconds that contains ``epoch``."""
        session = self.session_at(epoch) if self.zone is not None else None
        if session is None:  # UTC cut (no details, or a bar outside every known session)
            start = math.floor(epoch / bucket) * bucket
            return Period(start, start + bucket, start)
        open_, close = session
        if bucket >= DAY:
            day = dt.datetime.fromtimestamp(open_, self.zone).date()
            stamp = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
            return Period(open_, close, stamp)
        start = open_ + math.floor((epoch - open_) / bucket) * bucket
        return Period(start, min(start + bucket, close), start)

    def session_seconds(self) -> float:
        """Length of a typical session (for history durations), a full day without one."""
        if not self.sessions:
            return float(DAY)
        a, b = self.sessions[-1]
        return float(b - a)

    def history_period(self, stamp: float, bucket: int) -> Period:
        """The period of a history bar stamped ``stamp`` (daily: its date at midnight UTC)."""
        if bucket >= DAY and self.zone is not None:
            day = dt.datetime.fromtimestamp(stamp, dt.UTC).date()
            noon = dt.datetime.combine(day, dt.time(12), tzinfo=self.zone).timestamp()
            session = self.session_at(noon)
            if session is not None:
                return Period(session[0], session[1], stamp)
            return Period(stamp, stamp + DAY, stamp)
        period = self.period(stamp, bucket)
        return Period(period.start, period.end, stamp)

"""An exchange's sessions, and the 5-second bars inside a file's bars.

IB sends real-time bars only as 5-second bars, during the exchange's hours, on its clock. A
file holds daily (or minute) bars, so the IB-like gateway walks a price path through each
file bar and cuts it into 5-second bars:

- the path goes open -> low -> high -> close for a bar that closed at or above its open, and
  open -> high -> low -> close otherwise, with the low and high reached at one third and two
  thirds of the bar (on 5-second boundaries), straight in between;
- prices between those four points are rounded to the minimum tick (kept inside the bar's
  range), the four points themselves are the file's;
- the volume is spread evenly, in whole shares when the bar's volume is whole.

So the 5-second bars of a file bar aggregate back to exactly that bar (open, high, low,
close, volume), and a daily strategy built from 5-second bars sees the file's daily bars.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

BAR = 5  # seconds: the only real-time bar size IB sends


@dataclass(frozen=True)
class Calendar:
    """Regular trading hours ``open``-``close`` (``"09:30"``) in ``time_zone``, every session."""

    time_zone: str
    open: str
    close: str

    def __post_init__(self) -> None:
        if self.session_seconds <= 0 or self.session_seconds % BAR:
            raise ValueError(f"session {self.open}-{self.close}: not a multiple of {BAR} s")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @staticmethod
    def _clock(text: str) -> dt.time:
        return dt.datetime.strptime(text, "%H:%M").time()

    @property
    def session_seconds(self) -> int:
        a, b = self._clock(self.open), self._clock(self.close)
        return (b.hour - a.hour) * 3600 + (b.minute - a.minute) * 60

    def session(self, day: dt.date) -> tuple[int, int]:
        """Epoch seconds of the open and the close of ``day``'s session."""
        start = dt.datetime.combine(day, self._clock(self.open), tzinfo=self.zone)
        return int(start.timestamp()), int(start.timestamp()) + self.session_seconds

    def day_of(self, epoch: float) -> dt.date:
        """The exchange's calendar date at ``epoch``."""
        return dt.datetime.fromtimestamp(epoch, self.zone).date()

    def local(self, epoch: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(epoch, self.zone)

    def midnight(self, epoch: float) -> int:
        """Epoch seconds of the exchange's midnight starting the day of ``epoch``."""
        day = self.day_of(epoch)
        return int(dt.datetime.combine(day, dt.time(), tzinfo=self.zone).timestamp())

    def hours_text(self, sessions: list[dt.date], today: dt.date, days: int = 7) -> str:
        """contractDetails' tradingHours / liquidHours: ``yyyymmdd:hhmm-yyyymmdd:hhmm;...``
        from ``today`` for ``days`` calendar days, ``yyyymmdd:CLOSED`` on days without one."""
        known = set(sessions)
        a, b = self.open.replace(":", ""), self.close.replace(":", "")
        parts = []
        for k in range(days):
            day = today + dt.timedelta(days=k)
            d = day.strftime("%Y%m%d")
            parts.append(f"{d}:{a}-{d}:{b}" if day in known else f"{d}:CLOSED")
        return ";".join(parts)


class Path:
    """The price path through one file bar, cut into ``pieces`` bars of 5 seconds."""

    def __init__(self, ohlcv: tuple[float, float, float, float, float], pieces: int, tick: float):
        o, h, lo, c, v = ohlcv
        self.ohlcv = ohlcv
        self.pieces = n = max(int(pieces), 1)
        self.exact = n < 3  # too short for a path through both extremes: keep the file's range
        if self.exact:
            self.points = np.linspace(o, c, n + 1)
        else:
            a = max(1, round(n / 3))
            b = min(max(a + 1, round(2 * n / 3)), n - 1)
            first, second = (lo, h) if c >= o else (h, lo)
            points = np.interp(np.arange(n + 1), [0, a, b, n], [o, first, second, c])
            if tick > 0:
                points = np.clip(np.round(points / tick) * tick, lo, h)
            points[[0, a, b, n]] = [o, first, second, c]
            self.points = points
        self.whole = float(v).is_integer()

    def volume_before(self, j: int) -> float:
        """Volume of pieces ``0 .. j - 1``."""
        v, n = self.ohlcv[4], self.pieces
        if j >= n:
            return v
        return float(math.floor(v * j / n)) if self.whole else v * j / n

    def span(self, j0: int, j1: int) -> tuple[float, float, float, float, float]:
        """Pieces ``j0 .. j1 - 1`` aggregated: (open, high, low, close, volume)."""
        j0, j1 = max(j0, 0), min(j1, self.pieces)
        if j1 <= j0:
            raise ValueError(f"empty span {j0}..{j1}")
        if j0 == 0 and j1 == self.pieces:
            return self.ohlcv
        seg = self.points[j0 : j1 + 1]
        if self.exact:
            high, low = self.ohlcv[1], self.ohlcv[2]
        else:
            high, low = float(seg.max()), float(seg.min())
        volume = self.volume_before(j1) - self.volume_before(j0)
        return float(seg[0]), high, low, float(seg[-1]), volume

    def bar(self, j: int) -> tuple[float, float, float, float, float]:
        """The ``j``-th 5-second bar."""
        return self.span(j, j + 1)

    def price(self, j: int) -> float:
        """The path's price after ``j`` pieces (the close of piece ``j - 1``)."""
        return float(self.points[min(max(j, 0), self.pieces)])


def combine(
    bars: list[tuple[float, float, float, float, float]],
) -> tuple[float, float, float, float, float]:
    """Consecutive bars as one: first open, highest high, lowest low, last close, volume."""
    return (
        bars[0][0],
        max(b[1] for b in bars),
        min(b[2] for b in bars),
        bars[-1][3],
        sum(b[4] for b in bars),
    )


# IB's legal barSizeSetting values (its error text lists them), in seconds; W and M are left out.
BAR_SIZES = {
    "1 secs": 1, "5 secs": 5, "10 secs": 10, "15 secs": 15, "30 secs": 30,
    "1 min": 60, "2 mins": 120, "3 mins": 180, "5 mins": 300, "10 mins": 600,
    "15 mins": 900, "20 mins": 1200, "30 mins": 1800,
    "1 hour": 3600, "2 hours": 7200, "3 hours": 10800, "4 hours": 14400, "8 hours": 28800,
    "1 day": 86_400,
}  # fmt: skip


def bar_size_seconds(text: str) -> int | None:
    """IB's barSizeSetting in seconds (``"1 day"`` -> 86400), None when IB would refuse it."""
    return BAR_SIZES.get(" ".join(text.split()))

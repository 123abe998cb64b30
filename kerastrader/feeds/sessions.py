"""The exchange clock: what a "day" is for bars kept in UTC.

Bars stay in naive UTC inside kerastrader (daily bars are naive midnight of their exchange
date). The clock answers, in the exchange's zone (``data.timezone``) and session
(``data.session_start`` .. ``data.session_end``), which trading date a bar belongs to: for
session filters, resampling to days, weekly and monthly rebalancing, the daily loss limit and
the daily returns.

A session that crosses midnight in local time (``session_start > session_end``, such as
17:00-16:00 America/Chicago for CME futures) belongs to the date it ends on: bars at or after
``session_start`` count for the next calendar date (Sunday 17:00 opens Monday's session).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from kerastrader.errors import ConfigError

_ONE_DAY = dt.timedelta(days=1)


def parse_time(text: str, key: str) -> dt.time:
    """``"09:30"`` or ``"09:30:00"`` -> a time, or a ConfigError naming ``key``."""
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{key} = {text!r}: a time of day is HH:MM") from None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"data.timezone = {name!r}: not a known time zone (such as 'America/New_York')"
        ) from None


def wall_times(index: pd.DatetimeIndex, timezone: str) -> pd.DatetimeIndex:
    """Naive-UTC stamps -> naive local wall-clock stamps in ``timezone``."""
    index = pd.DatetimeIndex(index)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    if timezone == "UTC":
        return index
    zone(timezone)  # a clear error for an unknown name
    return index.tz_localize("UTC").tz_convert(timezone).tz_localize(None)


def time_of_day(wall: pd.DatetimeIndex) -> np.ndarray:
    """Wall-clock time of day as a timedelta64 array (DST-proof: computed on wall stamps)."""
    return (wall - wall.normalize()).to_numpy()


def as_timedelta(t: dt.time) -> np.timedelta64:
    micros = ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond
    return np.timedelta64(micros, "us")


@dataclass(frozen=True)
class ExchangeClock:
    """The exchange's zone and session; ``""`` session times mean no session is configured."""

    timezone: str = "UTC"
    session_start: str = ""
    session_end: str = ""
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _start: dt.time | None = field(init=False, repr=False, compare=False)
    _crosses: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        start = parse_time(self.session_start, "data.session_start") if self.session_start else None
        end = parse_time(self.session_end, "data.session_end") if self.session_end else None
        object.__setattr__(self, "_zone", zone(self.timezone))
        object.__setattr__(self, "_start", start)
        object.__setattr__(self, "_crosses", start is not None and end is not None and start > end)

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> ExchangeClock:
        """From the config's ``[data]``: ``timezone``, ``session_start``, ``session_end``."""
        return cls(
            timezone=data.get("timezone") or "UTC",
            session_start=data.get("session_start") or "",
            session_end=data.get("session_end") or "",
        )

    @property
    def crosses_midnight(self) -> bool:
        return self._crosses

    def trading_days(self, index: pd.DatetimeIndex, daily: bool | None = None) -> pd.DatetimeIndex:
        """The exchange trading date (naive midnight) of every naive-UTC stamp of ``index``.

        Daily bars (``daily=True``, or by default when every stamp is a midnight) already are
        exchange dates and map to their own date.
        """
        index = pd.DatetimeIndex(index)
        if index.tz is not None:
            index = index.tz_convert("UTC").tz_localize(None)
        if daily is None:
            daily = bool(len(index)) and bool((index == index.normalize()).all())
        if daily:
            return index.normalize()
        wall = wall_times(index, self.timezone)
        days = wall.normalize()
        if self._crosses:
            late = time_of_day(wall) >= as_timedelta(self._start)
            days = days + pd.to_timedelta(late.astype(np.int64), unit="D")
        return pd.DatetimeIndex(days, name=index.name)

    def trading_day(self, when: dt.datetime) -> dt.date:
        """The exchange trading date of one intraday stamp (naive UTC, or tz-aware)."""
        aware = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when
        local = aware.astimezone(self._zone)
        day = local.date()
        if self._crosses and local.time() >= self._start:
            day += _ONE_DAY
        return day

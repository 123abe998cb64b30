"""Intraday session filtering and resampling, with Backtrader's labelling conventions.

Intraday bars are labelled by the end of their period (the 09:01-09:05 minutes make the 09:05
five-minute bar), daily and longer bars by their first day, as Backtrader's resampler does.
Empty periods produce no bar: a gap stays a gap, it is never filled.

Sessions and days are the exchange's (:mod:`kerastrader.feeds.sessions`): a session filter
compares local wall-clock times in ``data.timezone``, and daily bars gather the intraday bars
of one trading date (a session crossing midnight is one day), not of one UTC date.
"""

from __future__ import annotations

import pandas as pd

from kerastrader.errors import ConfigError
from kerastrader.feeds.sessions import (
    ExchangeClock,
    as_timedelta,
    parse_time,
    time_of_day,
    wall_times,
)

_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def _fixed(offset: pd.DateOffset) -> pd.Timedelta | None:
    """The offset's length when it has a fixed one (5min, 1D), None for weeks or months."""
    try:
        return pd.Timedelta(offset)
    except ValueError:
        return None


def _daily(index: pd.DatetimeIndex) -> bool:
    return bool(len(index)) and bool((index == index.normalize()).all())


def resample_bars(
    bars: pd.DataFrame, rule: str, clock: ExchangeClock | None = None
) -> pd.DataFrame:
    """Aggregate bars to ``rule`` (a pandas offset such as ``5min``, ``60min``, ``1D``).

    Daily and longer rules first gather intraday bars by ``clock``'s trading date (default:
    the UTC date), labelled with that date at midnight.
    """
    try:
        offset = pd.tseries.frequencies.to_offset(rule)
    except ValueError:
        raise ConfigError(
            f"resample rule {rule!r}: not a pandas offset such as 5min or 1D"
        ) from None
    step = _fixed(offset)
    agg = {c: f for c, f in _AGG.items() if c in bars.columns}
    if "adj_close" in bars.columns:
        agg["adj_close"] = "last"
    if "dividends" in bars.columns:  # cash per share paid inside the period
        agg["dividends"] = "sum"
    if "splits" in bars.columns:  # 0 means none; several splits in a period multiply
        bars = bars.assign(splits=bars["splits"].where(bars["splits"] > 0, 1.0))
        agg["splits"] = "prod"
    if step is not None and step < pd.Timedelta("1D"):
        out = bars.resample(offset, closed="right", label="right").agg(agg)
    else:
        days = (clock or ExchangeClock()).trading_days(bars.index)
        out = bars.groupby(days).agg(agg)
        if step != pd.Timedelta("1D"):  # weeks, months, several days: from the trading days
            out = out.resample(offset).agg(agg)
    out = out.dropna(subset=["open"])
    out.index.name = bars.index.name
    out.attrs.update(bars.attrs)
    return out


def filter_session(bars: pd.DataFrame, start: str, end: str, timezone: str = "UTC") -> pd.DataFrame:
    """Intraday bars whose local time of day in ``timezone`` lies in [start, end] (``"09:00"``,
    ``"17:30"``; both ends included). ``start > end`` is a session crossing midnight (17:00 ..
    16:00 keeps bars at or after 17:00 and at or before 16:00). Daily bars are returned as
    they are: a session says nothing about them.
    """
    t0 = as_timedelta(parse_time(start, "session start"))
    t1 = as_timedelta(parse_time(end, "session end"))
    if _daily(bars.index):
        return bars
    local = time_of_day(wall_times(bars.index, timezone))
    keep = (local >= t0) & (local <= t1) if t0 <= t1 else (local >= t0) | (local <= t1)
    out = bars[keep]
    out.attrs.update(bars.attrs)
    return out

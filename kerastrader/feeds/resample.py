"""Intraday session filtering and resampling, with Backtrader's labelling conventions.

Intraday bars are labelled by the end of their period (the 09:01-09:05 minutes make the 09:05
five-minute bar), daily and longer bars by their first day, as Backtrader's resampler does.
Empty periods produce no bar: a gap stays a gap, it is never filled.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from kerastrader.errors import ConfigError

_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def resample_bars(bars: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Aggregate bars to ``rule`` (a pandas offset such as ``5min``, ``60min``, ``1D``)."""
    try:
        offset = pd.tseries.frequencies.to_offset(rule)
    except ValueError:
        raise ConfigError(
            f"resample rule {rule!r}: not a pandas offset such as 5min or 1D"
        ) from None
    intraday = pd.Timedelta(offset) < pd.Timedelta("1D") if hasattr(offset, "nanos") else False
    agg = {c: f for c, f in _AGG.items() if c in bars.columns}
    if "adj_close" in bars.columns:
        agg["adj_close"] = "last"
    kwargs = {"closed": "right", "label": "right"} if intraday else {}
    out = bars.resample(offset, **kwargs).agg(agg).dropna(subset=["open"])
    out.index.name = bars.index.name
    out.attrs.update(bars.attrs)
    return out


def filter_session(bars: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    """Bars whose timestamp's time of day lies in [start, end] (``"09:00"``, ``"17:30"``)."""
    try:
        t0, t1 = dt.time.fromisoformat(start), dt.time.fromisoformat(end)
    except ValueError:
        raise ConfigError(f"session {start!r}..{end!r}: times are HH:MM") from None
    times = bars.index.time
    keep = [(t0 <= t <= t1) for t in times] if t0 <= t1 else [(t >= t0 or t <= t1) for t in times]
    out = bars[keep]
    out.attrs.update(bars.attrs)
    return out

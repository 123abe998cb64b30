"""Validated bars become a named Backtrader feed."""

from __future__ import annotations

from typing import Any

import backtrader as bt
import pandas as pd


def make_feed(bars: pd.DataFrame, name: str, **kwargs: Any) -> bt.feeds.PandasData:
    """A ``PandasData`` feed over the canonical columns, named ``name``.

    The name is what Backtrader, the analyzer's position columns and the report call the
    instrument; without one, Backtrader would label positions ``Data0`` and fills ``''``.
    """
    frame = bars[["open", "high", "low", "close", "volume"]]
    if isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is not None:
        # Backtrader works in naive datetimes; bars are kept in UTC.
        frame = frame.tz_convert("UTC").tz_localize(None)
    if "timeframe" not in kwargs and len(frame) > 1:
        step = pd.Series(frame.index).diff().median()
        if step < pd.Timedelta("1D"):
            # Intraday: tell Backtrader, or it treats every bar as a day (and resamples wrongly).
            kwargs["timeframe"] = bt.TimeFrame.Minutes
            kwargs.setdefault("compression", max(1, int(step / pd.Timedelta("1min"))))
    feed = bt.feeds.PandasData(
        dataname=frame,
        name=name,
        datetime=None,
        open="open",
        high="high",
        low="low",
        close="close",
        volume="volume",
        openinterest=None,
        **kwargs,
    )
    return feed

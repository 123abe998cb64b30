"""Validated bars become a named Backtrader feed."""

from __future__ import annotations

from typing import Any

import backtrader as bt
import pandas as pd


class ActionsData(bt.feeds.PandasData):
    """``PandasData`` plus the per-bar corporate actions of :mod:`kerastrader.feeds.actions`:
    ``dividend`` (cash per share, on the ex-date) and ``split`` (new shares per old). The
    broker pays the dividends and applies the splits; the model's features read them."""

    lines = ("dividend", "split")
    params = (("dividend", "dividend"), ("split", "split"))


def make_feed(bars: pd.DataFrame, name: str, **kwargs: Any) -> bt.feeds.PandasData:
    """A ``PandasData`` feed over the canonical columns, named ``name``; an
    :class:`ActionsData` when the bars carry ``dividend`` and ``split`` columns.

    The name is what Backtrader, the analyzer's position columns and the report call the
    instrument; without one, Backtrader would label positions ``Data0`` and fills ``''``.
    """
    actions = "dividend" in bars and "split" in bars
    columns = ["open", "high", "low", "close", "volume"]
    columns += ["dividend", "split"] if actions else []
    frame = bars[columns]
    if isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is not None:
        # Backtrader works in naive datetimes; bars are kept in UTC.
        frame = frame.tz_convert("UTC").tz_localize(None)
    if "timeframe" not in kwargs and len(frame) > 1:
        step = pd.Series(frame.index).diff().median()
        if step < pd.Timedelta("1D"):
            # Intraday: tell Backtrader, or it treats every bar as a day (and resamples wrongly).
            kwargs["timeframe"] = bt.TimeFrame.Minutes
            kwargs.setdefault("compression", max(1, int(step / pd.Timedelta("1min"))))
    feed = (ActionsData if actions else bt.feeds.PandasData)(
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

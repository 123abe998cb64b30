"""The one assembly of Cerebro for a run, whichever feeds and broker it trades through.

A backtest hands it file feeds and the simulated cost broker; a paper session hands it IB's
live feeds and the IB broker. The strategy, its settings, the model, the exchange clock and
the analyzer are the same objects in both, so a strategy deploys from research to paper
without a code change, and the two runs can be compared file by file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import backtrader as bt
import pandas as pd

from kerastrader.config import Config
from kerastrader.feeds.sessions import ExchangeClock
from kerastrader.reports.analyzer import PortfolioAnalyzer
from kerastrader.strategies.model_strategy import ModelStrategy
from kerastrader.strategies.sizing import bars_per_year


def strategy_settings(cfg: Config, head: Any, index: pd.DatetimeIndex | None) -> dict[str, Any]:
    """ModelStrategy's settings from the config: its sections, the model's head, and bars per
    year taken from the data's own spacing when ``sizing.periods_per_year`` is 0."""
    sizing = dict(cfg["sizing"])
    if not sizing["periods_per_year"]:
        sizing["periods_per_year"] = bars_per_year(index) if index is not None else 252
    return {
        **{k: cfg[k] for k in ("strategy", "risk", "portfolio")},
        "sizing": sizing,
        "head": head.kind,
        "horizon": head.horizon,
    }


def assemble(
    cfg: Config,
    *,
    feeds: Sequence[tuple[str, bt.AbstractDataBase]],
    install_broker: Callable[[bt.Cerebro], None],
    model: Any,
    head: Any,
    trade_start: Any,
    bars_index: pd.DatetimeIndex | None = None,
    round_trip: float = 0.0,
    runonce: bool = True,
) -> bt.Cerebro:
    """Cerebro with ``feeds`` (name, feed), the broker ``install_broker`` puts on it, the
    model strategy trading from ``trade_start``, and the portfolio analyzer recording from
    there; days, rebalancing and the daily loss limit on the exchange's clock."""
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for name, feed in feeds:
        cerebro.adddata(feed, name=name)
    install_broker(cerebro)
    clock = ExchangeClock.from_config(cfg["data"])
    cerebro.addstrategy(
        ModelStrategy,
        model=model,
        settings=strategy_settings(cfg, head, bars_index),
        trade_start=trade_start,
        round_trip=round_trip,
        clock=clock,
    )
    cerebro.addanalyzer(PortfolioAnalyzer, _name="portfolio", start=trade_start, clock=clock)
    return cerebro

"""A target weight buys the same exposure whatever one contract is worth: the model strategy
sizes a future (multiplier 50, as IB's ES) by value / (price x 50), in a real Backtrader run
with Backtrader's own futures commission scheme (margin, multiplier)."""

from __future__ import annotations

import copy
import math

import backtrader as bt

from kerastrader.config import default_config
from kerastrader.feeds.btfeed import make_feed
from tests.test_rebalancing import START, Scripted, calm_bars


def first_fill(mult: float, trained) -> tuple[float, float]:
    cfg = default_config()
    cfg["strategy"].update(target_percent=0.5)
    settings = {k: copy.deepcopy(cfg[k]) for k in ("strategy", "sizing", "risk", "portfolio")}
    bars = calm_bars(260, seed=3)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars, "ES"), name="ES")
    cerebro.broker.setcash(1_000_000.0)
    if mult != 1:  # a future: margin per contract, PnL and exposure times the multiplier
        cerebro.broker.setcommission(commission=0.85, margin=300.0, mult=mult)  # ~10%
    strategy = cerebro.addstrategy(Scripted, model=trained.loaded, settings=settings,
                                   script=lambda bar, i: 0.9)  # fmt: skip
    strategy = cerebro.run()[0]
    _, _, size, _ = strategy.fills[0]
    return size, float(bars["close"].iloc[START])


def test_a_future_is_sized_by_its_contract_value(trained):
    size, close = first_fill(50.0, trained)
    # 50% of 1,000,000 less the 0.5% cash buffer, in contracts worth close x 50 each
    assert size == math.trunc(0.5 * 1_000_000 * (1 - 0.005) / (close * 50))
    assert size > 0


def test_a_stock_is_sized_by_its_price(trained):
    size, close = first_fill(1.0, trained)
    assert size == math.trunc(0.5 * 1_000_000 * (1 - 0.005) / close)

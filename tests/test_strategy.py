"""The threshold strategy: hysteresis, fills at the next open, costs as configured."""

from __future__ import annotations

import datetime as dt
import math

import backtrader as bt
import numpy as np
import pytest

from kerastrader.feeds.btfeed import make_feed
from kerastrader.strategies.signals import FLAT, LONG, SHORT, threshold_side
from kerastrader.strategies.threshold import ThresholdStrategy


@pytest.mark.parametrize(
    ("prediction", "current", "allow_short", "expected"),
    [
        (0.60, FLAT, False, LONG),
        (0.50, FLAT, False, FLAT),  # between exit and enter: keep
        (0.50, LONG, False, LONG),  # between exit and enter: keep
        (0.40, LONG, False, FLAT),
        (0.40, LONG, True, SHORT),
        (0.60, SHORT, True, LONG),
        (float("nan"), LONG, False, LONG),
    ],
)
def test_threshold_side_with_hysteresis(prediction, current, allow_short, expected):
    assert threshold_side(prediction, current, 0.55, 0.45, allow_short) == expected


class Recording(ThresholdStrategy):
    def __init__(self):
        super().__init__()
        self.fills = []

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append(
                (
                    bt.num2date(order.created.dt).date(),
                    self.data.datetime.date(0),
                    order.executed.size,
                    order.executed.price,
                    order.executed.comm,
                )
            )
        super().notify_order(order)


def run(bars, artifact, **params):
    predictions = None
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars, "ORCL"), name="ORCL")
    cerebro.broker.setcash(100_000.0)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.broker.set_slippage_perc(0.0005, slip_open=True, slip_match=True)
    cerebro.addstrategy(Recording, model=artifact, **params)
    strat = cerebro.run()[0]
    predictions = np.asarray(strat.prediction.lines.prediction.array[: len(bars)])
    return strat, predictions


@pytest.fixture(scope="module")
def median_prediction(trained, orcl_slice):
    _, preds = run(orcl_slice, trained.loaded, enter=2.0, exit=-1.0)
    return float(np.nanmedian(preds))


@pytest.fixture(scope="module")
def traded(trained, orcl_slice, median_prediction):
    m = median_prediction
    return run(orcl_slice, trained.loaded, enter=m, exit=m - 1e-4, target_percent=0.5)


def test_orders_fill_at_the_next_bars_open_plus_slippage(traded, orcl_slice):
    strat, _ = traded
    assert len(strat.fills) >= 4
    for created, filled, size, price, _ in strat.fills:
        assert filled > created  # no cheat-on-close: never the bar the decision was made on
        next_bar = orcl_slice.index[orcl_slice.index.searchsorted(np.datetime64(created)) + 1]
        assert filled == next_bar.date()
        bar = orcl_slice.loc[str(filled)]
        slip = 1.0005 if size > 0 else 0.9995
        expected = min(max(bar["open"] * slip, bar["low"]), bar["high"])
        assert price == pytest.approx(expected, rel=1e-9)


def test_commission_is_the_configured_fraction_of_traded_value(traded):
    strat, _ = traded
    for *_, size, price, comm in strat.fills:
        assert comm == pytest.approx(abs(size) * price * 0.001, rel=1e-9)


def test_position_is_sized_as_target_percent_of_equity(traded, orcl_slice):
    strat, _ = traded
    created, _, first_size, _, _ = strat.fills[0]
    # The first order, from 100,000 in cash: whole shares worth half the equity less the 0.5%
    # cash buffer, at the decision bar's close.
    close = orcl_slice.loc[str(created), "close"]
    assert first_size == math.trunc(0.5 * 100_000.0 * (1 - 0.005) / close)


def test_long_flat_strategy_never_goes_short(traded):
    strat, _ = traded
    sizes = [size for *_, size, _, _ in strat.fills]
    # Buy, sell all of it, buy again: every exit goes flat, never through zero to short.
    buys, sells = sizes[0::2], sizes[1::2]
    assert len(sells) >= 2 and all(size > 0 for size in buys)
    assert sells == [-size for size in buys[: len(sells)]]


def test_no_orders_before_trade_start(trained, orcl_slice, median_prediction):
    start = dt.date(2005, 6, 1)
    strat, _ = run(
        orcl_slice,
        trained.loaded,
        enter=median_prediction,
        exit=median_prediction - 1e-4,
        trade_start=start,
    )
    assert strat.fills and all(created >= start for created, *_ in strat.fills)


def test_short_side_goes_short_below_exit(trained, orcl_slice, median_prediction):
    m = median_prediction
    strat, _ = run(
        orcl_slice, trained.loaded, enter=m, exit=m - 1e-4, allow_short=True, target_percent=0.5
    )
    position, seen_short = 0, False
    for *_, size, _, _ in strat.fills:
        position += size
        seen_short |= position < 0
    assert seen_short
    # A reversal is one order: from +x straight to about -x, never through a separate flat fill.
    assert any(abs(size) > 1.5 * abs(strat.fills[0][2]) for *_, size, _, _ in strat.fills[1:])

"""A shared model over a portfolio: one model call per bar for every instrument, the same
predictions as one KerasIndicator per instrument, in both passes."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest

from kerastrader.feeds.btfeed import make_feed
from kerastrader.models.indicator import KerasIndicator
from kerastrader.models.shared_indicator import SharedKerasIndicator
from tests.conftest import random_walk_bars


class Both(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        self.shared = SharedKerasIndicator(*self.datas, model=self.p.model)
        self.single = [KerasIndicator(d, model=self.p.model) for d in self.datas]


def universe(orcl_slice):
    bars = [orcl_slice]
    for seed in (1, 2):
        walk = random_walk_bars(len(orcl_slice), seed=seed)
        walk.index = orcl_slice.index
        bars.append(walk)
    return bars


def run(bars, model, runonce):
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for i, b in enumerate(bars):
        cerebro.adddata(make_feed(b, f"S{i}"), name=f"S{i}")
    cerebro.addstrategy(Both, model=model)
    return cerebro.run()[0]


@pytest.mark.parametrize("runonce", [True, False])
def test_shared_lines_equal_one_indicator_per_instrument(trained, orcl_slice, runonce):
    bars = universe(orcl_slice)
    strat = run(bars, trained.loaded, runonce)
    n = len(orcl_slice)
    for i, single in enumerate(strat.single):
        shared = np.asarray(strat.shared.lines[i].array[:n])
        alone = np.asarray(single.lines.prediction.array[:n])
        assert np.isfinite(shared).sum() > 1000
        np.testing.assert_allclose(shared, alone, atol=1e-5, equal_nan=True)


def test_bar_by_bar_makes_one_model_call_per_bar_for_all_instruments(trained, orcl_slice):
    strat = run(universe(orcl_slice), trained.loaded, runonce=False)
    predicted_bars = int(np.isfinite(np.asarray(strat.shared.lines[0].array)).sum())
    assert strat.shared.calls == predicted_bars
    assert strat.shared.predicted_bars == predicted_bars


def test_vectorised_and_bar_by_bar_shared_passes_agree(trained, orcl_slice):
    bars = universe(orcl_slice)
    once = run(bars, trained.loaded, True).shared
    step = run(bars, trained.loaded, False).shared
    n = len(orcl_slice)
    for i in range(3):
        np.testing.assert_allclose(
            np.asarray(once.lines[i].array[:n]),
            np.asarray(step.lines[i].array[:n]),
            atol=1e-5,
            equal_nan=True,
        )


def test_a_feed_with_a_later_start_predicts_nan_until_its_own_warm_up(trained, orcl_slice):
    late = orcl_slice.iloc[400:].copy()
    strat = run([orcl_slice, late], trained.loaded, runonce=False)
    line = np.asarray(strat.shared.lines[1].array[: len(orcl_slice)])
    warm = 400 + trained.loaded.warmup - 1
    assert np.isnan(line[:warm]).all()
    assert np.isfinite(line[warm:]).all()

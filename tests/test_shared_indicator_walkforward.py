"""The shared portfolio indicator over walk-forward folds: each bar of each instrument is
predicted by the fold whose period holds it, with one model call per fold in the vectorised
pass, and the same numbers as one KerasIndicator per instrument in both passes."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest

from kerastrader.feeds.btfeed import make_feed
from kerastrader.models.indicator import KerasIndicator
from kerastrader.models.shared_indicator import SharedKerasIndicator
from kerastrader.models.walkforward import walk_forward
from tests.conftest import random_walk_bars, tiny_config

WF = {"enabled": True, "train_bars": 400, "validation_bars": 150, "step": 250, "folds": 2}


class Both(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        self.shared = SharedKerasIndicator(*self.datas, model=self.p.model)
        self.single = [KerasIndicator(d, model=self.p.model) for d in self.datas]


@pytest.fixture(scope="module")
def folds(orcl_slice, tmp_path_factory):
    cfg = tiny_config(walkforward=WF, training={"epochs": 1})
    path = tmp_path_factory.mktemp("wf-shared") / "model"
    return walk_forward({"ORCL": orcl_slice}, cfg, {"symbol": "ORCL"}, path)


@pytest.fixture(scope="module")
def book(orcl_slice):
    walk = random_walk_bars(len(orcl_slice), seed=7)
    walk.index = orcl_slice.index
    return [orcl_slice, walk]


def run(bars, model, runonce: bool):
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for i, b in enumerate(bars):
        cerebro.adddata(make_feed(b, f"S{i}"), name=f"S{i}")
    cerebro.addstrategy(Both, model=model)
    return cerebro.run()[0]


@pytest.mark.parametrize("runonce", [True, False], ids=["vectorised", "bar_by_bar"])
def test_shared_folds_equal_one_indicator_per_instrument(folds, book, runonce):
    strat = run(book, folds, runonce)
    n = len(book[0])
    for i, single in enumerate(strat.single):
        alone = np.asarray(single.lines.prediction.array[:n])
        shared = np.asarray(strat.shared.lines[i].array[:n])
        assert np.isfinite(alone).sum() > 500
        np.testing.assert_allclose(shared, alone, atol=1e-9, rtol=0, equal_nan=True)
    if runonce:
        assert strat.shared.batch_calls == len(folds.folds)

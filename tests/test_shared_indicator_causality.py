"""Causality of the shared portfolio indicator: changing one instrument's bars after t changes
no instrument's prediction at or before t, in either pass."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerastrader.feeds.btfeed import make_feed
from kerastrader.models.shared_indicator import SharedKerasIndicator
from tests.conftest import random_walk_bars

N_BARS = 320
N_INSTRUMENTS = 3


class Shared(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        self.shared = SharedKerasIndicator(*self.datas, model=self.p.model)


def lines(bars, model, runonce: bool) -> np.ndarray:
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for i, b in enumerate(bars):
        cerebro.adddata(make_feed(b, f"S{i}"), name=f"S{i}")
    cerebro.addstrategy(Shared, model=model)
    shared = cerebro.run()[0].shared
    return np.array([shared.lines[i].array[:N_BARS] for i in range(len(bars))])


def with_new_future(frame, t: int, seed: int):
    """``frame`` with every bar after row t replaced by another valid random walk's bars."""
    other = random_walk_bars(len(frame), seed=1000 + seed)
    other.index = frame.index
    changed = frame.copy()
    changed.iloc[t + 1 :] = other.iloc[t + 1 :].to_numpy()
    return changed


BASE: dict[bool, np.ndarray] = {}


@pytest.fixture(scope="module")
def book():
    return [random_walk_bars(N_BARS, seed=s) for s in range(N_INSTRUMENTS)]


@pytest.mark.parametrize("runonce", [True, False], ids=["vectorised", "bar_by_bar"])
@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_changing_one_instruments_future_changes_nothing_at_or_before_t(
    trained, book, runonce, data
):
    model = trained.loaded
    t = data.draw(st.integers(model.warmup - 5, N_BARS - 20), label="t")
    which = data.draw(st.integers(0, N_INSTRUMENTS - 1), label="instrument")
    seed = data.draw(st.integers(0, 10_000), label="seed")
    if runonce not in BASE:
        BASE[runonce] = lines(book, model, runonce)
    before = BASE[runonce]
    changed = list(book)
    changed[which] = with_new_future(book[which], t, seed)
    after = lines(changed, model, runonce)
    np.testing.assert_array_equal(after[:, : t + 1], before[:, : t + 1])
    # The change is real: the changed instrument's later predictions move.
    assert not np.allclose(after[which, t + 1 :], before[which, t + 1 :], equal_nan=True)
    others = [i for i in range(N_INSTRUMENTS) if i != which]
    np.testing.assert_array_equal(after[others], before[others])

"""KerasIndicator: same predictions in both passes, batched in one, compiled in the other."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest

from kerastrader.feeds.btfeed import make_feed
from kerastrader.models.artifact import load_artifact
from kerastrader.models.feature_stream import FeatureStream
from kerastrader.models.features import FeatureSet
from kerastrader.models.indicator import KerasIndicator


class Record(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        self.pred = KerasIndicator(self.data, model=self.p.model)


def run(bars, model, runonce: bool) -> tuple[np.ndarray, bt.Strategy]:
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    cerebro.adddata(make_feed(bars, "ORCL"), name="ORCL")
    cerebro.addstrategy(Record, model=model)
    strat = cerebro.run()[0]
    return np.asarray(strat.pred.lines.prediction.array[: len(bars)]), strat


class Counting:
    """A real predictor that counts its calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, x):
        self.calls += 1
        return self.inner(x)

    def outputs(self, x):
        self.calls += 1
        return self.inner.outputs(x)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_vectorised_and_bar_by_bar_passes_agree_on_real_data(trained, orcl_slice):
    once, _ = run(orcl_slice, trained.loaded, runonce=True)
    step, _ = run(orcl_slice, trained.loaded, runonce=False)
    np.testing.assert_array_equal(np.isnan(once), np.isnan(step))
    assert np.isfinite(once).sum() > 1000
    np.testing.assert_allclose(once, step, atol=1e-5, equal_nan=True)


def test_prediction_is_nan_exactly_during_the_warm_up(trained, orcl_slice):
    once, _ = run(orcl_slice, trained.loaded, runonce=True)
    warmup = trained.loaded.warmup
    assert np.isnan(once[: warmup - 1]).all()
    assert np.isfinite(once[warmup - 1 :]).all()


def test_backtest_predictions_equal_the_training_pipeline_test_predictions(trained, orcl_slice):
    once, _ = run(orcl_slice, trained.loaded, runonce=True)
    np.testing.assert_allclose(once[trained.test_ends], trained.p_test, atol=1e-6)


def test_vectorised_pass_makes_one_batched_model_call(trained, orcl_slice):
    art = load_artifact(trained.loaded.path)
    counting = Counting(art.batch_predictor)
    art.__dict__["batch_predictor"] = counting
    run(orcl_slice, art, runonce=True)
    # Backtrader calls once() for the first bar after warm-up, then for all the rest.
    assert counting.calls <= 2


def test_bar_by_bar_pass_makes_one_compiled_call_per_bar_and_no_batched_call(trained, orcl_slice):
    art = load_artifact(trained.loaded.path)
    batch = Counting(art.batch_predictor)
    art.__dict__["batch_predictor"] = batch
    steps = []
    real = art.step_predictor

    def step_predictor(backend="onnx"):
        steps.append(Counting(real(backend)))
        return steps[-1]

    art.step_predictor = step_predictor
    out, _ = run(orcl_slice, art, runonce=False)
    assert batch.calls == 0
    assert len(steps) == 1
    assert steps[0].calls == np.isfinite(out).sum()


def test_bar_by_bar_pass_steps_the_features_once_per_bar_without_recomputing(
    trained, orcl_slice, monkeypatch
):
    """One seed at the first full window, then one stream step per bar: no feature function
    is run again on the trailing look-back."""
    calls = dict.fromkeys(["compute", "compute_last", "seed", "step"], 0)

    def counted(name, real):
        def wrapper(self, *args, **kwargs):
            calls[name] += 1
            return real(self, *args, **kwargs)

        return wrapper

    for cls, name in ((FeatureSet, "compute"), (FeatureSet, "compute_last"),
                      (FeatureStream, "seed"), (FeatureStream, "step")):  # fmt: skip
        monkeypatch.setattr(cls, name, counted(name, getattr(cls, name)))
    run(orcl_slice, load_artifact(trained.loaded.path), runonce=False)
    assert calls["compute"] == calls["compute_last"] == 0
    assert calls["seed"] == 1
    assert calls["step"] == len(orcl_slice) - trained.loaded.warmup


def test_model_by_path_in_a_users_own_strategy(trained, orcl_slice):
    """The README's usage: a path in __init__, the value read in next."""
    seen = []

    class UserStrategy(bt.Strategy):
        def __init__(self):
            self.p_up = KerasIndicator(self.data, model=str(trained.loaded.path))

        def next(self):
            seen.append(self.p_up[0])
            if self.p_up[0] > 0.5 and not self.position:
                self.buy()

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(orcl_slice, "ORCL"))
    cerebro.addstrategy(UserStrategy)
    cerebro.run()
    first = trained.loaded.warmup - 1  # next() starts on the first bar with a prediction
    assert len(seen) == len(orcl_slice) - first
    # What the strategy read on each test bar is what training predicted for that window.
    np.testing.assert_allclose(np.asarray(seen)[trained.test_ends - first], trained.p_test,
                               atol=1e-6)  # fmt: skip


def test_missing_model_argument_is_a_clear_error(orcl_slice):
    with pytest.raises(TypeError, match="needs model="):
        run(orcl_slice, None, runonce=True)

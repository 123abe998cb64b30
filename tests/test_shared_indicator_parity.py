"""The shared portfolio indicator against an independent computation of the same model.

The expected predictions come from the features' own definition applied to each instrument's
bars as a DataFrame, the scaler's numbers from the artifact's metadata, windows gathered by a
plain loop, and the Keras model called directly (TensorFlow, not the ONNX Runtime session the
indicator uses): nothing of DataPredictor, the window helpers or the inference module.
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest

from kerastrader.feeds.btfeed import make_feed
from kerastrader.models.features import FeatureSet
from kerastrader.models.shared_indicator import SharedKerasIndicator
from tests.conftest import random_walk_bars


class Shared(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        self.shared = SharedKerasIndicator(*self.datas, model=self.p.model)


def universe(orcl_slice):
    bars = [orcl_slice]
    for seed in (3, 4):
        walk = random_walk_bars(len(orcl_slice), seed=seed)
        walk.index = orcl_slice.index
        bars.append(walk)
    return bars


def run(bars, model, runonce: bool):
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for i, b in enumerate(bars):
        cerebro.adddata(make_feed(b, f"S{i}"), name=f"S{i}")
    cerebro.addstrategy(Shared, model=model)
    return cerebro.run()[0].shared


def independent_predictions(frame, art) -> np.ndarray:
    """The model's first output at every bar with a full window of finite feature rows."""
    meta = art.metadata
    feats = FeatureSet(meta["features"]["names"], memory=meta["features"]["memory"])
    rows = feats.compute_frame(frame).to_numpy()
    mean = np.asarray(meta["scaler"]["mean"])
    scale = np.asarray(meta["scaler"]["scale"])
    scaled = (rows - mean) / scale
    w = int(meta["window"])
    out = np.full(len(frame), np.nan)
    ends = [t for t in range(w - 1, len(frame)) if np.isfinite(rows[t - w + 1 : t + 1]).all()]
    x = np.stack([scaled[t - w + 1 : t + 1] for t in ends]).astype(np.float32)
    out[ends] = np.asarray(art.model(x, training=False))[:, 0]
    return out


@pytest.fixture(scope="module")
def bars(orcl_slice):
    return universe(orcl_slice)


@pytest.fixture(scope="module")
def passes(trained, bars):
    return {True: run(bars, trained.loaded, True), False: run(bars, trained.loaded, False)}


@pytest.mark.parametrize("runonce", [True, False], ids=["vectorised", "bar_by_bar"])
def test_shared_lines_equal_an_independent_keras_computation(trained, bars, passes, runonce):
    shared = passes[runonce]
    for i, frame in enumerate(bars):
        expected = independent_predictions(frame, trained.loaded)
        got = np.asarray(shared.lines[i].array[: len(frame)])
        assert np.isfinite(expected).sum() > 1000
        # ONNX Runtime against TensorFlow: float32 arithmetic in a different order.
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, equal_nan=True)


def test_vectorised_and_bar_by_bar_passes_agree_on_the_same_engine(trained, bars, passes):
    # Both passes run the artifact's ONNX model on ONNX Runtime, in batches of different
    # sizes (chunks of 256 windows against one window per instrument): same numbers.
    assert trained.loaded.batch_predictor.engine == "onnx"
    for i, frame in enumerate(bars):
        np.testing.assert_allclose(
            np.asarray(passes[True].lines[i].array[: len(frame)]),
            np.asarray(passes[False].lines[i].array[: len(frame)]),
            atol=1e-9,
            rtol=0,
            equal_nan=True,
        )


def test_vectorised_pass_makes_one_model_call_for_every_instrument(passes):
    assert passes[True].batch_calls == 1
    assert passes[True].calls == 0


def test_scores_and_raw_outputs_by_bar_match_the_lines(bars, passes):
    for shared in passes.values():
        for i, frame in enumerate(bars):
            line = np.asarray(shared.lines[i].array[: len(frame)])
            scores = dict(shared.scores[i].items())
            predicted = np.flatnonzero(np.isfinite(line))
            assert sorted(scores) == predicted.tolist()
            np.testing.assert_array_equal([scores[b] for b in predicted], line[predicted])
            np.testing.assert_array_equal(
                [shared.outputs[i][b][0] for b in predicted], line[predicted]
            )

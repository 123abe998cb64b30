"""A model's fixed costs are paid once per process: the second load of the same files reuses
the Keras model and the compiled predictors; changed files are loaded again."""

from __future__ import annotations

import json
import shutil

import backtrader as bt
import keras
import numpy as np
import pytest

import kerastrader.models.inference as inference
from kerastrader.feeds.btfeed import make_feed
from kerastrader.models.artifact import load_artifact, save_artifact
from kerastrader.models.artifact_cache import MODELS, ArtifactCache, CachedModel
from kerastrader.models.indicator import BarOutputs, KerasIndicator
from kerastrader.models.inference import BatchPredictor


@pytest.fixture
def keras_loads(monkeypatch):
    """Every call of the real Keras loader, counted (the loader itself still runs)."""
    calls = []
    real = keras.saving.load_model

    def counting(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("filepath"))
        return real(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", counting)
    return calls


@pytest.fixture
def sessions(monkeypatch):
    """Every ONNX Runtime session opened by a predictor, counted."""
    opened = []
    real = inference.onnx_session

    def counting(data):
        opened.append(len(data))
        return real(data)

    monkeypatch.setattr(inference, "onnx_session", counting)
    return opened


@pytest.fixture
def model_dir(trained, tmp_path):
    """A private copy of the session's artifact, so tests may rewrite its files."""
    path = tmp_path / "model"
    shutil.copytree(trained.loaded.path, path)
    return path


class Record(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        self.pred = KerasIndicator(self.data, model=self.p.model)


def backtest(bars, model, runonce: bool = True) -> bt.Strategy:
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    cerebro.adddata(make_feed(bars, "ORCL"), name="ORCL")
    cerebro.addstrategy(Record, model=model)
    return cerebro.run()[0]


def test_second_load_of_the_same_files_does_not_load_keras_again(model_dir, keras_loads):
    MODELS.clear()
    first = load_artifact(model_dir)
    second = load_artifact(model_dir)
    assert len(keras_loads) == 1
    assert second.model is first.model
    assert second.onnx_bytes is first.onnx_bytes
    assert second.batch_predictor is first.batch_predictor
    assert second.step_predictor("onnx") is first.step_predictor("onnx")
    # A new Artifact around the shared objects: its own metadata and attributes.
    assert second is not first and second.metadata is not first.metadata
    assert second.metadata == first.metadata
    assert MODELS.hits == 1 and MODELS.misses == 1


def test_a_second_backtest_from_the_directory_neither_loads_nor_compiles(
    model_dir, orcl_slice, keras_loads, sessions
):
    MODELS.clear()
    once = backtest(orcl_slice, str(model_dir))
    assert len(keras_loads) == 1 and len(sessions) == 1  # the batched pass's session
    again = backtest(orcl_slice, str(model_dir))
    step = backtest(orcl_slice, str(model_dir), runonce=False)
    assert len(keras_loads) == 1
    assert len(sessions) == 2  # the bar-by-bar predictor's own, opened once
    backtest(orcl_slice, str(model_dir), runonce=False)
    assert len(keras_loads) == 1 and len(sessions) == 2
    a = np.asarray(once.pred.lines.prediction.array[: len(orcl_slice)])
    b = np.asarray(again.pred.lines.prediction.array[: len(orcl_slice)])
    c = np.asarray(step.pred.lines.prediction.array[: len(orcl_slice)])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, atol=1e-5, equal_nan=True)


def test_changed_files_at_the_same_path_are_loaded_again(model_dir, keras_loads, trained):
    MODELS.clear()
    old = load_artifact(model_dir)
    x = np.random.default_rng(0).normal(size=(16, old.window, old.n_features)).astype("float32")
    before = old.batch_predictor(x)

    # Retrained at the same path: other weights, saved over the old directory.
    retrained = load_artifact(model_dir, cache=False)
    retrained.model = keras.models.clone_model(retrained.model)
    retrained.model.set_weights([w * 0.5 for w in old.model.get_weights()])
    retrained.onnx_bytes = None
    save_artifact(retrained, model_dir)
    calls = len(keras_loads)

    new = load_artifact(model_dir)
    assert len(keras_loads) == calls + 1
    assert new.model is not old.model
    after = new.batch_predictor(x)
    expected = new.model(x, training=False).numpy()[:, 0]
    np.testing.assert_allclose(after, expected, atol=1e-5)
    assert np.abs(after - before).max() > 1e-3  # not the stale model's predictions
    assert len(MODELS) == 1  # the old load of that path was dropped


def test_an_edited_metadata_file_is_a_change_too(model_dir, keras_loads):
    MODELS.clear()
    load_artifact(model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    meta["note"] = "edited"
    (model_dir / "metadata.json").write_text(json.dumps(meta))
    art = load_artifact(model_dir)
    assert len(keras_loads) == 2 and art.metadata["note"] == "edited"


def test_patching_one_loaded_artifact_leaves_the_next_load_alone(model_dir):
    MODELS.clear()
    first = load_artifact(model_dir)
    real = first.batch_predictor
    first.__dict__["batch_predictor"] = object()
    first.step_predictor = None
    second = load_artifact(model_dir)
    assert second.batch_predictor is real
    assert callable(second.step_predictor)


def test_cache_false_loads_afresh_and_keeps_nothing(model_dir, keras_loads):
    MODELS.clear()
    a = load_artifact(model_dir, cache=False)
    b = load_artifact(model_dir, cache=False)
    assert len(keras_loads) == 2 and a.model is not b.model and len(MODELS) == 0


def test_the_cache_is_a_bounded_lru():
    cache = ArtifactCache(maxsize=2)
    entry = {k: CachedModel(model=k, onnx_bytes=None) for k in "abc"}
    cache.put(("/a", "1"), entry["a"])
    cache.put(("/b", "1"), entry["b"])
    assert cache.get(("/a", "1")) is entry["a"]  # a is now the most recent
    cache.put(("/c", "1"), entry["c"])
    assert cache.get(("/b", "1")) is None  # the least recently used went
    assert cache.get(("/a", "1")) is entry["a"] and cache.get(("/c", "1")) is entry["c"]
    cache.put(("/a", "2"), entry["b"])  # new contents at /a replace the old ones
    assert cache.get(("/a", "1")) is None and len(cache) == 2
    off = ArtifactCache(maxsize=0)
    off.put(("/a", "1"), entry["a"])
    assert off.get(("/a", "1")) is None


def test_batched_pass_runs_on_onnx_when_the_artifact_has_it(trained):
    art = trained.loaded
    assert art.onnx_bytes is not None and art.batch_predictor.engine == "onnx"
    x = np.random.default_rng(1).normal(size=(600, art.window, art.n_features)).astype("float32")
    expected = art.model(x, training=False).numpy()
    np.testing.assert_allclose(art.batch_predictor.outputs(x), expected, atol=1e-5)


def test_batched_predictor_switches_to_onnx_once_the_model_is_exported(trained):
    art = trained.loaded
    holder: list[bytes | None] = [None]
    predictor = BatchPredictor(art.model, art.window, art.n_features, onnx_bytes=lambda: holder[0])
    x = np.random.default_rng(2).normal(size=(8, art.window, art.n_features)).astype("float32")
    assert predictor.engine == "tf"
    tf_out = predictor.outputs(x)
    holder[0] = art.onnx_bytes
    assert predictor.engine == "onnx"
    np.testing.assert_allclose(predictor.outputs(x), tf_out, atol=1e-5)


def test_vectorised_pass_makes_exactly_one_model_call(trained, orcl_slice):
    art = load_artifact(trained.loaded.path)
    calls = []
    real = art.batch_predictor

    class Counting:
        def outputs(self, x):
            calls.append(len(x))
            return real.outputs(x)

        def __getattr__(self, name):
            return getattr(real, name)

    art.__dict__["batch_predictor"] = Counting()
    strat = backtest(orcl_slice, art)
    line = np.asarray(strat.pred.lines.prediction.array[: len(orcl_slice)])
    assert calls == [np.isfinite(line).sum()]  # the first bar after warm-up included


def test_outputs_are_the_same_mapping_in_both_passes(trained, orcl_slice):
    once = backtest(orcl_slice, trained.loaded).pred.outputs
    step = backtest(orcl_slice, trained.loaded, runonce=False).pred.outputs
    assert isinstance(once, BarOutputs) and list(once) == list(step)
    first = trained.loaded.warmup - 1
    assert list(once) == list(range(first, len(orcl_slice)))
    np.testing.assert_allclose(
        np.array([once[i] for i in once]), np.array([step[i] for i in step]), atol=1e-5
    )


def test_bar_outputs_behaves_like_the_dict_it_replaces():
    out = BarOutputs()
    out.put(np.array([5, 7, 9]), np.array([[0.1], [0.2], [0.3]]))
    out[200] = np.array([0.9], dtype=np.float32)
    out[7] = [0.25]
    expected = {5: [0.1], 7: [0.25], 9: [0.3], 200: [0.9]}
    assert len(out) == 4 and list(out) == [5, 7, 9, 200]
    assert 7 in out and 6 not in out and -1 not in out and 10_000 not in out and "x" not in out
    for bar, value in expected.items():
        np.testing.assert_allclose(out[bar], value, rtol=1e-7)
    assert dict(out.items()).keys() == expected.keys()
    with pytest.raises(KeyError):
        out[6]
    with pytest.raises(ValueError, match="width"):
        out[3] = [0.1, 0.2]

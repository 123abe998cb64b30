"""Batched and per-bar inference agree with Keras itself."""

from __future__ import annotations

import numpy as np
import pytest

from kerastrader.models.inference import BatchPredictor, StepPredictor


@pytest.fixture(scope="module")
def windows(trained):
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, trained.loaded.window, trained.loaded.n_features)).astype(
        np.float32
    )


def test_batch_predictor_equals_keras(trained, windows):
    model = trained.loaded.model
    expected = model(windows, training=False).numpy()[:, 0]
    got = BatchPredictor(model, trained.loaded.window, trained.loaded.n_features)(windows)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("backend", ["onnx", "tf"])
def test_step_predictor_equals_keras(trained, windows, backend):
    art = trained.loaded
    step = art.step_predictor(backend)
    expected = art.model(windows[:8], training=False).numpy()[:, 0]
    got = np.array([step(w) for w in windows[:8]])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_unknown_backend_is_refused(trained):
    art = trained.loaded
    with pytest.raises(ValueError, match="unknown inference backend"):
        StepPredictor(art.model, art.window, art.n_features, backend="predict")


def test_a_calls_raw_outputs_are_not_overwritten_by_the_next_call(trained, windows):
    """The per-bar call writes into one bound output buffer; what it hands out is a copy."""
    step = trained.loaded.step_predictor("onnx")
    step(windows[0])
    first = step.last_outputs
    kept = first.copy()
    step(windows[1])
    np.testing.assert_array_equal(first, kept)
    assert not np.array_equal(step.last_outputs, kept)

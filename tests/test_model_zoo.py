"""Every model family trains, saves, reloads and backtests with both passes agreeing."""

from __future__ import annotations

import numpy as np
import pytest

from kerastrader.errors import ConfigError
from kerastrader.models.artifact import load_artifact, save_artifact
from kerastrader.models.builders import build_model
from kerastrader.models.training import train
from tests.conftest import tiny_config
from tests.test_indicator import run


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("gru", {"bidirectional": True}),
        ("dense", {"units": [8]}),
        ("cnn", {"units": [8, 8]}),
        ("transformer", {"units": [4]}),
    ],
)
def test_family_trains_saves_reloads_and_backtests(kind, extra, orcl_slice, tmp_path):
    cfg = tiny_config(model={"kind": kind, **extra}, training={"epochs": 1})
    result = train(orcl_slice, cfg, {})
    artifact = load_artifact(save_artifact(result.artifact, tmp_path / kind))
    assert artifact.metadata["kind"] == f"{kind}_direction"
    assert artifact.metadata["onnx"]["checked_windows"] == len(result.test_ends)
    once, _ = run(orcl_slice, artifact, runonce=True)  # Keras, batched
    step, _ = run(orcl_slice, artifact, runonce=False)  # the ONNX export, bar by bar
    np.testing.assert_allclose(once, step, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(once[result.test_ends], result.p_test, atol=1e-6)


def test_an_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="model.kind = 'rnn'"):
        build_model("rnn", 10, 3)


def test_bidirectional_is_only_for_recurrent_families():
    with pytest.raises(ConfigError, match="bidirectional applies to lstm and gru"):
        build_model("cnn", 10, 3, bidirectional=True)

"""Model options from config: heads, a user's own model, the autoencoder, callbacks, weights.

Each trains a tiny model on real ORCL bars, saves it, reloads it and runs both of Backtrader's
passes over it: what the artifact predicts must not depend on how it is run.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from kerastrader.errors import ConfigError
from kerastrader.models.artifact import load_artifact, save_artifact
from kerastrader.models.features import FeatureSet
from kerastrader.models.training import recency_weights, split_dataset, train
from tests.conftest import tiny_config
from tests.test_indicator import run


def _train_save_reload_backtest(cfg, bars, tmp_path, workdir=None):
    result = train(bars, cfg, {}, workdir)
    artifact = load_artifact(save_artifact(result.artifact, tmp_path / "model"))
    once, strat = run(bars, artifact, runonce=True)
    step, _ = run(bars, artifact, runonce=False)
    np.testing.assert_allclose(once, step, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(once[result.test_ends], result.p_test, atol=1e-6)
    return result, artifact, strat


def test_three_class_head_outputs_three_probabilities_and_a_neutral_half_score(
    orcl_slice, tmp_path
):
    cfg = tiny_config(label={"kind": "three_class", "dead_band": 0.005})
    result, artifact, strat = _train_save_reload_backtest(cfg, orcl_slice, tmp_path)
    assert artifact.metadata["kind"] == "lstm_three_class"
    assert artifact.model.output_shape == (None, 3)
    raw = np.array([strat.pred.outputs[i] for i in result.test_ends])
    np.testing.assert_allclose(raw.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(raw[:, 2] + 0.5 * raw[:, 1], result.p_test, atol=1e-6)
    test = artifact.metadata["metrics"]["test"]
    assert len(test["confusion_matrix"]) == 3
    assert sum(map(sum, test["confusion_matrix"])) == len(result.test_ends)
    assert set(np.unique(result.y_test)) == {0, 1, 2}
    # Accuracy and the confusion matrix again, from what the backtest's indicator output.
    picked = raw.argmax(axis=1)
    assert test["accuracy"] == pytest.approx(np.mean(picked == result.y_test), rel=1e-12)
    counts = [[int(np.sum((result.y_test == row) & (picked == col))) for col in range(3)]
              for row in range(3)]  # fmt: skip
    assert test["confusion_matrix"] == counts


def test_regression_head_predicts_returns_on_the_scale_of_the_training_targets(
    orcl_slice, tmp_path
):
    cfg = tiny_config(label={"kind": "regression", "horizon": 5})
    result, artifact, _ = _train_save_reload_backtest(cfg, orcl_slice, tmp_path)
    assert artifact.metadata["label"]["horizon"] == 5
    test = artifact.metadata["metrics"]["test"]
    assert {"mse", "mae", "directional_accuracy", "ic_spearman"} <= set(test)
    # The metrics again, from the closes (the 5-bar forward return) and the test predictions.
    close = orcl_slice["close"].to_numpy()
    y = close[result.test_ends + 5] / close[result.test_ends] - 1
    p = result.p_test
    assert test["mse"] == pytest.approx(np.mean((y - p) ** 2), rel=1e-6)
    assert test["mae"] == pytest.approx(np.mean(np.abs(y - p)), rel=1e-6)
    moved = y != 0
    hits = np.sign(y[moved]) == np.sign(p[moved])
    assert test["directional_accuracy"] == pytest.approx(hits.mean(), rel=1e-12)
    spearman = pd.Series(y).rank().corr(pd.Series(p).rank())
    assert test["ic_spearman"] == pytest.approx(spearman, rel=1e-6)
    # The rescaling layer puts outputs in return units (a 5-day return is a few percent).
    assert np.abs(result.p_test).max() < 0.5
    assert np.std(result.p_test) > 0


def test_regression_samples_are_purged_by_the_horizon(orcl_slice):
    cfg = tiny_config(label={"kind": "regression", "horizon": 5})
    result = train(orcl_slice, cfg, {})
    ds = result.dataset
    last_train = ds.dates.searchsorted(np.datetime64("2003-12-31"), side="right") - 1
    assert ds.ends["train"][-1] + 5 <= last_train
    assert ds.ends["validation"][0] > last_train


def test_a_users_saved_keras_file_is_trained_and_saved_like_a_built_in_family(orcl_slice, tmp_path):
    inputs = keras.Input(shape=(10, 9))
    x = keras.layers.Conv1D(4, 2, padding="causal", activation="relu")(inputs)
    x = keras.layers.GlobalMaxPooling1D()(x)
    mine = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    mine.save(tmp_path / "mine.keras")
    cfg = tiny_config(model={"kind": "custom", "custom": str(tmp_path / "mine.keras")})
    _, artifact, _ = _train_save_reload_backtest(cfg, orcl_slice, tmp_path)
    assert artifact.metadata["model"]["custom"].endswith("mine.keras")
    assert any(isinstance(layer, keras.layers.Conv1D) for layer in artifact.model.layers)


def test_a_users_builder_by_import_path_gets_the_input_shape_and_the_head(orcl_slice, tmp_path):
    cfg = tiny_config(
        model={"kind": "custom", "custom": "tests.plugins.user_models:tiny_gru"},
        label={"kind": "regression"},
    )
    _, artifact, _ = _train_save_reload_backtest(cfg, orcl_slice, tmp_path)
    assert artifact.model.name == "user_gru"
    assert artifact.model.input_shape == (None, 10, 9)


def test_a_user_model_with_the_wrong_output_shape_is_a_config_error(orcl_slice):
    cfg = tiny_config(model={"kind": "custom", "custom": "tests.plugins.user_models:wrong_output"})
    with pytest.raises(ConfigError, match=r"output shape \(None, 3\), the direction head needs"):
        train(orcl_slice, cfg, {})


def test_a_missing_user_model_is_a_config_error(orcl_slice, tmp_path):
    cfg = tiny_config(model={"kind": "custom", "custom": str(tmp_path / "nope.keras")})
    with pytest.raises(ConfigError, match="file not found"):
        train(orcl_slice, cfg, {})


@pytest.mark.parametrize(("use", "width"), [("bottleneck", 3), ("error", 10), ("both", 4)])
def test_autoencoder_front_end_feeds_codes_or_anomaly_score_and_survives_save_and_onnx(
    use, width, orcl_slice, tmp_path
):
    cfg = tiny_config(
        model={"autoencoder": use, "bottleneck": 3, "autoencoder_epochs": 3},
        training={"epochs": 1},
    )
    _, artifact, _ = _train_save_reload_backtest(cfg, orcl_slice, tmp_path)
    front = artifact.model.get_layer("ae_features" if use != "bottleneck" else "ae_enc_0")
    assert front.output.shape[-1] == width
    assert not artifact.model.get_layer("ae_enc_0").trainable
    assert artifact.metadata["autoencoder"]["train_rows"] > 500


def test_the_autoencoder_stays_frozen_while_the_predictor_trains(orcl_slice):
    cfg = tiny_config(model={"autoencoder": "bottleneck", "bottleneck": 3, "autoencoder_epochs": 2})
    result = train(orcl_slice, cfg, {})
    model = result.artifact.model
    trainable = {w.path for w in model.trainable_weights}
    assert not any(path.startswith("ae_") for path in trainable)


def test_reduce_lr_on_plateau_lowers_the_learning_rate(orcl_slice):
    cfg = tiny_config(
        training={"epochs": 4, "patience": 10, "reduce_lr_patience": 1, "reduce_lr_factor": 0.1},
        model={"learning_rate": 0.01},
    )
    meta = train(orcl_slice, cfg, {}).artifact.metadata
    assert meta["training"]["final_learning_rate"] < 0.01


def test_checkpoint_and_tensorboard_write_into_the_run_folder(orcl_slice, tmp_path):
    cfg = tiny_config(training={"checkpoint": True, "tensorboard": "tb"})
    train(orcl_slice, cfg, {}, workdir=tmp_path)
    best = keras.saving.load_model(tmp_path / "checkpoints" / "best.keras")
    assert best.input_shape == (None, 10, 9)
    assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))


def test_recency_weights_halve_every_halflife_bars():
    np.testing.assert_allclose(recency_weights(np.array([0, 250, 500]), 250), [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(recency_weights(np.array([0, 9]), 0), [1.0, 1.0])


def test_recency_halflife_changes_the_fit_and_is_recorded(orcl_slice):
    plain = train(orcl_slice, tiny_config(), {})
    recent = train(orcl_slice, tiny_config(training={"recency_halflife": 100.0}), {})
    assert recent.artifact.metadata["training"]["recency_halflife"] == 100.0
    assert not np.allclose(plain.p_test, recent.p_test)
    json.dumps(recent.artifact.metadata)


def test_permutation_selection_sees_training_rows_only_and_the_model_uses_the_kept_features(
    orcl_slice, tmp_path
):
    cfg = tiny_config(selection={"method": "permutation", "min_features": 2, "max_features": 4})
    result, artifact, _ = _train_save_reload_backtest(cfg, orcl_slice, tmp_path)
    sel = artifact.metadata["selection"]
    assert 2 <= len(sel["selected"]) <= 4
    assert artifact.metadata["features"]["names"] == sel["selected"]
    assert artifact.n_features == len(sel["selected"])
    # The candidate rows are exactly the training windows' last bars: nothing after train_end.
    details = sel["details"]
    used = details["rows_fit"] + details["rows_purged"] + details["rows_holdout"]
    candidates = FeatureSet(sel["candidates"], memory=cfg["features"]["memory"])
    train_rows = split_dataset(orcl_slice, candidates, 10, cfg["split"]).ends["train"]
    assert used == len(train_rows)

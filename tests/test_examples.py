"""Every config in examples/ runs end to end through run_backtest.py, shrunk for the test suite
(one epoch, tiny layers, few trials and folds, one autoencoder epoch); the full sizes run from
the README."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from kerastrader.cli import run_backtest_main
from tests.conftest import ROOT, shared_file

EXAMPLES = ROOT / "examples"
SHRINK = ["--set", "training.epochs=1", "--set", "report.figures=false", "-q"]


def run_example(name: str, tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / name
    argv = [str(EXAMPLES / f"{name}.toml"), "--out", str(out), *SHRINK, *extra]
    assert run_backtest_main(argv) == 0
    assert (out / "report.html").is_file()
    return out


def test_walkforward_example_reports_one_row_per_fold(tmp_path):
    out = run_example("walkforward", tmp_path, "--set", "walkforward.folds=2",
                      "--set", "model.units=[4]")  # fmt: skip
    schedule = json.loads((out / "model" / "walkforward.json").read_text())
    assert len(schedule["folds"]) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["model"]["folds"]) == 2
    assert "Walk-forward folds" in (out / "report.html").read_text()
    again = tmp_path / "again"
    argv = [str(EXAMPLES / "walkforward.toml"), "--model", str(out / "model"), "--out", str(again),
            *SHRINK, "--set", "walkforward.folds=2", "--set", "model.units=[4]"]  # fmt: skip
    assert run_backtest_main(argv) == 0
    a = pd.read_csv(out / "predictions.csv")
    b = pd.read_csv(again / "predictions.csv")
    np.testing.assert_allclose(a["prediction"], b["prediction"], atol=1e-6, equal_nan=True)


def test_tuning_example_records_the_best_trial_in_the_artifact(tmp_path):
    out = run_example("tuning", tmp_path, "--set", "tuning.max_trials=2",
                      "--set", "tuning.epochs=1")  # fmt: skip
    meta = json.loads((out / "model" / "metadata.json").read_text())
    tuning = meta["tuning"]
    assert set(tuning["best"]) == {"learning_rate", "units", "dropout", "kind"}
    assert len(tuning["trials"]) == 2
    assert meta["model"]["learning_rate"] == tuning["best"]["learning_rate"]
    assert (out / "tuning").is_dir()


def test_feature_selection_example_trains_on_the_selected_features_only(tmp_path):
    out = run_example("feature_selection", tmp_path, "--set", "model.units=[4]")
    meta = json.loads((out / "model" / "metadata.json").read_text())
    selected = meta["selection"]["selected"]
    assert 4 <= len(selected) <= 8
    assert meta["features"]["names"] == selected
    assert set(selected) <= set(meta["selection"]["candidates"])


def test_regression_example_reports_regression_metrics(tmp_path):
    out = run_example("regression", tmp_path, "--set", "model.units=[4]")
    model = json.loads((out / "metrics.json").read_text())["model"]
    assert model["task"] == "regression"
    assert {"mse", "mae", "directional_accuracy", "ic_spearman"} <= set(model)


def test_three_class_example_reports_a_three_by_three_confusion_matrix(tmp_path):
    # The autoencoder front end trains for its own autoencoder_epochs (30): one is enough here.
    out = run_example("three_class", tmp_path, "--set", "model.units=[4]",
                      "--set", "model.autoencoder_epochs=1")  # fmt: skip
    model = json.loads((out / "metrics.json").read_text())["model"]
    assert model["task"] == "three_class"
    assert len(model["confusion_matrix"]) == 3
    assert (out / "checkpoints" / "best.keras").is_file()


def test_custom_model_example_trains_the_users_function(tmp_path):
    out = run_example("custom_model", tmp_path)
    assert json.loads((out / "model" / "metadata.json").read_text())["model"]["custom"].endswith(
        "custom_model.py:build"
    )


def test_nvda_example_config_is_valid():
    from kerastrader.config import load_config

    shared_file("nvda-1999-2014.csv")
    assert load_config(EXAMPLES / "nvda.toml")["data"]["symbol"] == "NVDA"

"""Chronological splits, purged boundaries, a training-only scaler, reproducible training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from kerastrader.errors import ConfigError
from kerastrader.models.features import FeatureSet
from kerastrader.models.training import split_dataset, train
from tests.conftest import tiny_config


def test_periods_are_chronological_and_disjoint(trained):
    p = trained.artifact.metadata["periods"]
    assert p["train"][0] < p["train"][1] < p["validation"][0] <= p["validation"][1]
    assert p["validation"][1] < p["test"][0] <= p["test"][1]
    assert p["train"][1] <= "2003-12-31" < p["validation"][0]
    assert p["validation"][1] <= "2004-12-31" < p["test"][0]


def test_last_training_label_does_not_look_into_the_validation_period(trained):
    ds = trained.dataset
    last_train = ds.ends["train"][-1]
    # The label of t uses Close[t+1]: that bar must still be in the training period.
    assert ds.dates[last_train + 1] <= pd.Timestamp("2003-12-31")
    last_val = ds.ends["validation"][-1]
    assert ds.dates[last_val + 1] <= pd.Timestamp("2004-12-31")


def test_scaler_is_fitted_on_training_rows_only(trained, orcl_slice):
    meta = trained.artifact.metadata
    fs = FeatureSet(meta["features"]["names"], memory=meta["features"]["memory"])
    feats = fs.compute(orcl_slice)
    last = trained.dataset.ends["train"][-1]
    train_rows = feats[fs.lookback - 1 : last + 1]
    np.testing.assert_allclose(meta["scaler"]["mean"], train_rows.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(meta["scaler"]["scale"], train_rows.std(axis=0), rtol=1e-9)
    all_rows = feats[fs.lookback - 1 :]
    assert not np.allclose(meta["scaler"]["mean"], all_rows.mean(axis=0), rtol=1e-3)


def test_metadata_records_what_a_reviewer_needs(trained, orcl_slice):
    meta = trained.loaded.metadata
    for key in ("features", "window", "scaler", "label", "periods", "data", "metrics", "versions"):
        assert key in meta
    assert meta["label"]["definition"].startswith("1 when Close[t+1] > Close[t]")
    assert meta["data"]["sha256"] == orcl_slice.attrs["sha256"]
    test = meta["metrics"]["test"]
    assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(test)
    assert test["n_test"] == len(trained.dataset.ends["test"])
    # The test metrics again, from the closes (did the next bar close higher?) and the test
    # predictions: accuracy at 0.5, precision, and ROC AUC as the Mann-Whitney rank statistic.
    close = orcl_slice["close"]
    up = (close.shift(-1) > close).to_numpy()[trained.test_ends]
    p = trained.p_test
    assert test["accuracy"] == pytest.approx(np.mean((p > 0.5) == up), rel=1e-12)
    assert test["precision"] == pytest.approx(up[p > 0.5].mean(), rel=1e-12)
    n1, n0 = up.sum(), (~up).sum()
    auc = (rankdata(p)[up].sum() - n1 * (n1 + 1) / 2) / (n0 * n1)
    assert test["roc_auc"] == pytest.approx(auc, rel=1e-9)
    assert {"tensorflow", "keras", "backtrader"} <= set(meta["versions"])


def test_class_weights_balance_the_training_labels(trained):
    weights = trained.loaded.metadata["training"]["class_weights"]
    y = trained.dataset.labels[trained.dataset.ends["train"]].astype(int)
    n0, n1 = (y == 0).sum(), (y == 1).sum()
    assert n0 != n1
    assert weights["0"] * n0 == pytest.approx(weights["1"] * n1)


def test_same_seed_gives_the_same_model(orcl_slice, trained):
    again = train(orcl_slice, tiny_config(), {})
    np.testing.assert_array_equal(again.p_test, trained.p_test)


def test_a_split_date_outside_the_data_is_a_config_error(orcl_slice):
    fs = FeatureSet(["logret_1"])
    split = {"train_end": "1990-01-01", "validation_end": "1991-01-01"}
    with pytest.raises(ConfigError, match="train period has no labelled windows"):
        split_dataset(orcl_slice, fs, 10, split)


def test_fraction_split_when_no_dates_are_given(orcl_slice):
    fs = FeatureSet(["logret_1", "rsi_14"])
    split = {
        "train_end": "",
        "validation_end": "",
        "train_fraction": 0.6,
        "validation_fraction": 0.2,
    }
    ds = split_dataset(orcl_slice, fs, 10, split)
    n = sum(len(v) for v in ds.ends.values())
    assert abs(len(ds.ends["train"]) / n - 0.6) < 0.01
    assert ds.ends["train"][-1] < ds.ends["validation"][0] < ds.ends["test"][0]


def test_tf_data_pipeline_trains_the_same_model_as_the_arrays(orcl_slice, trained):
    piped = train(orcl_slice, tiny_config(training={"pipeline": "tf.data"}), {})
    assert piped.artifact.metadata["training"]["pipeline"] == "tf.data"
    np.testing.assert_array_equal(piped.p_test, trained.p_test)


def test_steps_per_execution_trains_the_same_model(orcl_slice, trained):
    grouped = train(orcl_slice, tiny_config(training={"steps_per_execution": 4}), {})
    np.testing.assert_allclose(grouped.p_test, trained.p_test, atol=1e-6)


def test_jit_compile_trains_with_xla_reproducibly_and_restores_op_determinism(orcl_slice, trained):
    from tensorflow.python.framework import config as tf_config

    cfg = tiny_config(training={"jit_compile": True})
    xla, again = train(orcl_slice, cfg, {}), train(orcl_slice, cfg, {})
    assert xla.artifact.model.jit_compile is True
    assert xla.artifact.metadata["training"]["jit_compile"] is True
    np.testing.assert_array_equal(again.p_test, xla.p_test)
    assert tf_config.is_op_determinism_enabled()
    # XLA fuses and reorders float32 arithmetic: the same training, not the same bits.
    np.testing.assert_allclose(xla.p_test, trained.p_test, atol=1e-3)


def test_an_unknown_training_pipeline_is_a_config_error():
    with pytest.raises(ConfigError, match=r"training\.pipeline = 'dataset': expected one of"):
        tiny_config(training={"pipeline": "dataset"})

"""Walk-forward: every predicted bar comes from a fold model fitted strictly before it, and
KerasIndicator switches models at the fold boundaries identically in both passes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kerastrader.errors import ConfigError
from kerastrader.models.features import FeatureSet
from kerastrader.models.walkforward import fold_starts, load_model, walk_forward
from tests.conftest import tiny_config
from tests.test_indicator import run

WF = {"enabled": True, "train_bars": 400, "validation_bars": 150, "step": 250, "folds": 3}


def wf_config(**walkforward):
    return tiny_config(walkforward={**WF, **walkforward}, training={"epochs": 1})


@pytest.fixture(scope="module")
def folds(orcl_slice, tmp_path_factory):
    path = tmp_path_factory.mktemp("wf") / "model"
    model = walk_forward({"ORCL": orcl_slice}, wf_config(), {"symbol": "ORCL"}, path)
    return model, path


def _plan(bars, **walkforward):
    cfg = wf_config(**walkforward)
    lookback = FeatureSet(cfg["features"]["names"], memory=cfg["features"]["memory"]).lookback
    return fold_starts(pd.DatetimeIndex(bars.index), cfg, lookback), cfg


def test_folds_step_forward_by_k_bars_and_the_last_runs_to_the_end(orcl_slice):
    plan, _ = _plan(orcl_slice, folds=0)
    starts = [s for s, _ in plan]
    assert np.all(np.diff(starts) == 250)
    assert plan[-1][1] == len(orcl_slice) - 1
    assert all(e + 1 == s for (_, e), (s, _) in zip(plan, plan[1:], strict=False))


def test_every_fold_trains_only_on_labels_known_before_its_first_prediction(folds, orcl_slice):
    model, _ = folds
    dates = orcl_slice.index
    for fold in model.folds:
        meta = fold.artifact.metadata
        last_sample = dates.get_loc(pd.Timestamp(meta["periods"]["validation"][1]))
        first_pred = dates.get_loc(fold.start)
        # the last validation sample's label uses Close[t+1]: purge of one bar (horizon 1)
        assert last_sample + 1 < first_pred
        assert pd.Timestamp(meta["periods"]["test"][0]) == fold.start


def test_an_embargo_widens_the_gap_by_that_many_bars(orcl_slice, tmp_path):
    cfg = wf_config(folds=1)
    cfg["split"]["embargo"] = 5
    model = walk_forward({"ORCL": orcl_slice}, cfg, {}, tmp_path / "m")
    meta = model.folds[0].artifact.metadata
    dates = orcl_slice.index
    last_sample = dates.get_loc(pd.Timestamp(meta["periods"]["validation"][1]))
    assert dates.get_loc(model.folds[0].start) - last_sample >= 1 + 5 + 1


def test_rolling_folds_train_on_the_last_train_bars_only(orcl_slice, tmp_path):
    model = walk_forward(
        {"ORCL": orcl_slice}, wf_config(scheme="rolling", folds=2), {}, tmp_path / "m"
    )
    firsts = [pd.Timestamp(f.artifact.metadata["periods"]["train"][0]) for f in model.folds]
    assert firsts[1] > firsts[0]
    spans = [f.artifact.metadata["training"]["samples"]["train"] for f in model.folds]
    assert max(spans) <= 400


def test_expanding_folds_keep_the_first_training_bar(folds):
    model, _ = folds
    firsts = {f.artifact.metadata["periods"]["train"][0] for f in model.folds}
    assert len(firsts) == 1


def test_each_bar_is_predicted_by_the_fold_whose_period_holds_it(folds, orcl_slice):
    model, path = folds
    once, _ = run(orcl_slice, str(path), runonce=True)
    dates = orcl_slice.index
    first = dates.get_loc(model.folds[0].start)
    assert np.isnan(once[:first]).all()
    for k, fold in enumerate(model.folds):
        lo = dates.get_loc(fold.start)
        hi = dates.get_loc(model.folds[k + 1].start) if k + 1 < len(model.folds) else len(dates)
        alone, _ = run(orcl_slice, fold.artifact, runonce=True)
        np.testing.assert_allclose(once[lo:hi], alone[lo:hi], atol=1e-6)
        assert np.isfinite(once[lo:hi]).all()


def test_both_passes_switch_models_at_the_same_bars(folds, orcl_slice):
    _, path = folds
    once, _ = run(orcl_slice, str(path), runonce=True)
    step, _ = run(orcl_slice, str(path), runonce=False)
    assert np.isfinite(once).sum() > 700
    np.testing.assert_allclose(once, step, atol=1e-5, equal_nan=True)


def test_the_schedule_and_every_folds_artifact_are_saved(folds):
    model, path = folds
    saved = json.loads((path / "walkforward.json").read_text())
    assert [f["dir"] for f in saved["folds"]] == ["fold_000", "fold_001", "fold_002"]
    assert {"accuracy", "roc_auc", "n", "predicts", "epochs"} <= set(saved["folds"][0])
    assert saved["metrics"]["test"]["n_test"] == sum(f["n"] for f in saved["folds"])
    assert len(load_model(path).folds) == 3


def test_a_start_too_early_for_the_first_fold_is_a_config_error(orcl_slice):
    with pytest.raises(ConfigError, match="earliest possible start"):
        _plan(orcl_slice, start="2000-06-01")


def test_too_little_data_is_a_config_error(orcl_slice):
    with pytest.raises(ConfigError, match="walk-forward needs more data"):
        _plan(orcl_slice.iloc[:600])

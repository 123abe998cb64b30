"""Feature selection on training rows: Boruta and purged permutation importance.

The generated data have one feature that drives the target ("signal", deliberately not the first
column) and four that are pure noise. Both methods must find the one and drop the others, and the
guard rails (NaN warm-up, min/max feature counts, bad arguments) must behave as documented.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from kerastrader.errors import ConfigError
from kerastrader.models.selection import SelectionResult, select_features

NAMES = ["noise_a", "signal", "noise_b", "noise_c", "noise_d"]
NOISE = [n for n in NAMES if n != "signal"]
ROWS = 1000


def _features(rng: np.random.Generator, rows: int = ROWS) -> np.ndarray:
    return rng.normal(size=(rows, len(NAMES)))


def signal_classes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up/down labels decided by "signal" plus noise; the other columns are irrelevant."""
    rng = np.random.default_rng(seed)
    x = _features(rng)
    y = (x[:, 1] + rng.normal(scale=0.5, size=ROWS) > 0).astype(int)
    return x, y


def signal_returns(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A continuous target: 0.5 * signal + noise."""
    rng = np.random.default_rng(seed)
    x = _features(rng)
    return x, 0.5 * x[:, 1] + rng.normal(scale=0.5, size=ROWS)


def pure_noise(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels that no feature can predict."""
    rng = np.random.default_rng(seed)
    return _features(rng), rng.integers(0, 2, ROWS)


@pytest.fixture(scope="module")
def boruta_on_signal() -> SelectionResult:
    x, y = signal_classes()
    return select_features(x, y, NAMES, "boruta")


@pytest.fixture(scope="module")
def permutation_on_signal() -> SelectionResult:
    x, y = signal_classes()
    return select_features(x, y, NAMES, "permutation")


# --- what gets selected ---------------------------------------------------------------------


def test_boruta_confirms_the_signal_and_rejects_the_noise(boruta_on_signal):
    result = boruta_on_signal
    assert result.method == "boruta"
    assert result.selected == ["signal"]
    assert result.details["confirmed"] == ["signal"]
    assert set(result.details["tentative"] + result.details["rejected"]) == set(NOISE)


def test_boruta_scores_are_its_ranking_with_1_for_confirmed(boruta_on_signal):
    scores = boruta_on_signal.scores
    assert set(scores) == set(NAMES)
    assert scores["signal"] == 1
    assert all(scores[n] > 1 for n in NOISE)


def test_permutation_keeps_the_signal_and_drops_the_noise(permutation_on_signal):
    result = permutation_on_signal
    assert result.method == "permutation"
    assert result.selected == ["signal"]
    assert result.details["scoring"] == "roc_auc"  # binary labels


def test_permutation_scores_are_mean_importances_largest_for_the_signal(permutation_on_signal):
    scores = permutation_on_signal.scores
    assert max(scores, key=scores.get) == "signal"
    assert scores["signal"] > 0.1  # shuffling it costs a lot of AUC
    assert all(abs(scores[n]) < 0.02 for n in NOISE)  # shuffling noise costs next to nothing


@pytest.mark.parametrize("method", ["boruta", "permutation"])
def test_regression_targets_work_with_both_methods(method):
    x, y = signal_returns()
    result = select_features(x, y, NAMES, method, task="regression")
    assert result.selected == ["signal"]
    if method == "permutation":
        assert result.details["scoring"] == "neg_mean_squared_error"


def test_permutation_scores_multi_class_labels_by_log_loss():
    rng = np.random.default_rng(0)
    x = _features(rng)
    y = np.digitize(x[:, 1] + rng.normal(scale=0.5, size=ROWS), [-0.5, 0.5])  # 0, 1, 2
    result = select_features(x, y, NAMES, "permutation")
    assert result.details["scoring"] == "neg_log_loss"
    assert "signal" in result.selected


# --- time series hygiene --------------------------------------------------------------------


def test_nan_warm_up_rows_are_dropped_before_selecting():
    x, y = signal_classes()
    warm_x = np.vstack([np.full((30, len(NAMES)), np.nan), x])
    warm_y = np.concatenate([np.zeros(30), y.astype(float)])
    warm_y[-5:] = np.nan  # the last bars have no label yet
    result = select_features(warm_x, warm_y, NAMES, "permutation")
    clean = select_features(x[:-5], y[:-5], NAMES, "permutation")
    assert result.details["rows_used"] == ROWS - 5
    assert result.details["rows_dropped_nan"] == 35
    assert result.selected == clean.selected == ["signal"]
    assert result.scores == clean.scores


def test_permutation_fits_on_the_past_and_scores_on_a_purged_later_holdout():
    x, y = signal_classes()
    result = select_features(x, y, NAMES, "permutation", horizon=5)
    d = result.details
    assert d["rows_purged"] == 5
    assert d["rows_holdout"] == ROWS // 5
    assert d["rows_fit"] + d["rows_purged"] + d["rows_holdout"] == ROWS


def test_permutation_importance_is_measured_on_the_latest_rows(permutation_on_signal):
    # "signal" drives the label in the first 80% of the rows only; afterwards the label is noise.
    # A shuffled split would still credit "signal" with most of its usual importance; the
    # chronological holdout sees that it no longer works.
    rng = np.random.default_rng(0)
    x = _features(rng)
    cut = int(ROWS * 0.8)
    driver = np.concatenate([x[:cut, 1], rng.normal(size=ROWS - cut)])
    y = (driver + rng.normal(scale=0.5, size=ROWS) > 0).astype(int)
    result = select_features(x, y, NAMES, "permutation")
    assert permutation_on_signal.scores["signal"] > 0.3  # when it works throughout
    assert result.scores["signal"] < 0.1  # when it stopped working before the holdout
    assert "signal" not in result.selected


# --- min / max and order --------------------------------------------------------------------


def test_min_features_falls_back_to_the_best_ranked_when_nothing_is_confirmed(caplog):
    x, y = pure_noise()
    with caplog.at_level(logging.WARNING, logger="kerastrader.models.selection"):
        result = select_features(x, y, NAMES, "boruta", min_features=2)
    assert result.details["confirmed"] == []
    assert len(result.selected) == 2
    assert set(result.selected) == set(result.details["ranked"][:2])
    assert result.details["fallback_used"] is True
    assert "fewer than min_features=2" in caplog.text


def _three_strengths(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Three informative features of decreasing strength, listed weakest first, plus noise."""
    rng = np.random.default_rng(seed)
    names = ["weak", "noise", "strong", "medium"]
    x = rng.normal(size=(ROWS, len(names)))
    y = 0.5 * x[:, 0] + 2.0 * x[:, 2] + 1.0 * x[:, 3] + rng.normal(scale=0.5, size=ROWS)
    return x, y, names


def test_max_features_keeps_only_the_best_ranked():
    x, y, names = _three_strengths()
    uncapped = select_features(x, y, names, "permutation", task="regression")
    capped = select_features(x, y, names, "permutation", task="regression", max_features=2)
    assert set(uncapped.selected) == {"weak", "strong", "medium"}
    assert set(capped.selected) == {"strong", "medium"}
    assert capped.details["capped"] is True


def test_selected_names_keep_the_original_column_order_not_the_ranking():
    x, y, names = _three_strengths()
    result = select_features(x, y, names, "permutation", task="regression")
    assert result.details["ranked"][:3] == ["strong", "medium", "weak"]
    assert result.selected == ["weak", "strong", "medium"]


@pytest.mark.parametrize("method", ["boruta", "permutation"])
def test_the_same_seed_gives_the_same_result(method):
    x, y = signal_classes()
    first = select_features(x, y, NAMES, method, seed=7)
    second = select_features(x, y, NAMES, method, seed=7)
    assert first.to_dict() == second.to_dict()


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "lasso"}, "unknown feature selection method 'lasso'"),
        ({"task": "ranking"}, "unknown task 'ranking'"),
        ({"names": NAMES[:4]}, "4 names for 5 feature columns"),
        ({"rows": 49}, "at least 50 training rows"),
        ({"min_features": 6}, "min_features=6 exceeds the 5 candidate"),
        ({"min_features": 3, "max_features": 2}, "max_features=2 is below min_features=3"),
    ],
    ids=["method", "task", "names", "rows", "min_features", "max_below_min"],
)
def test_bad_arguments_raise_a_config_error_naming_the_problem(kwargs, message):
    x, y = signal_classes()
    rows = kwargs.pop("rows", ROWS)
    args = {"names": NAMES, "method": "permutation", **kwargs}
    with pytest.raises(ConfigError, match=message):
        select_features(x[:rows], y[:rows], args.pop("names"), args.pop("method"), **args)


def test_nan_rows_count_against_the_50_row_minimum():
    x, y = signal_classes()
    x = x[:60].copy()
    x[:11, 0] = np.nan  # 49 usable rows left
    with pytest.raises(ConfigError, match="got 49 of 60"):
        select_features(x, y[:60], NAMES, "boruta")


def test_fractional_labels_with_the_classification_task_are_refused():
    x, y = signal_returns()
    with pytest.raises(ConfigError, match="task='regression'"):
        select_features(x, y, NAMES, "permutation")


# --- the record -----------------------------------------------------------------------------


def test_to_dict_round_trips_through_json(boruta_on_signal, permutation_on_signal):
    for result in (boruta_on_signal, permutation_on_signal):
        record = result.to_dict()
        assert json.loads(json.dumps(record, allow_nan=False)) == record
        assert record["method"] == result.method
        assert record["selected"] == result.selected
        assert record["details"]["rows_used"] == ROWS

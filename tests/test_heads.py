"""Heads: the label each head learns, its one-number prediction and its metrics."""

from __future__ import annotations

import numpy as np
import pytest

from kerastrader.errors import ConfigError
from kerastrader.models.evaluation import multiclass_metrics, regression_metrics
from kerastrader.models.heads import Head

CLOSE = np.array([100.0, 101.0, 101.1, 100.0, 100.0, 103.0])


def test_direction_label_with_a_horizon_compares_the_close_h_bars_ahead():
    got = Head("direction", horizon=2).labels(CLOSE)
    np.testing.assert_array_equal(got[:4], [1.0, 0.0, 0.0, 1.0])
    assert np.isnan(got[-2:]).all()


def test_three_class_label_puts_moves_inside_the_dead_band_in_the_middle_class():
    # returns: +1%, +0.099%, -1.088%, 0%, +3%
    got = Head("three_class", horizon=1, dead_band=0.002).labels(CLOSE)
    np.testing.assert_array_equal(got[:5], [2.0, 1.0, 0.0, 1.0, 2.0])
    assert np.isnan(got[-1])


def test_regression_label_is_the_forward_simple_return():
    got = Head("regression", horizon=3).labels(CLOSE)
    np.testing.assert_allclose(got[:3], [100.0 / 100.0 - 1, 100.0 / 101.0 - 1, 103.0 / 101.1 - 1])
    assert np.isnan(got[-3:]).all()


def test_three_class_prediction_is_p_up_plus_half_p_flat_so_half_is_neutral():
    probs = np.array([[0.2, 0.6, 0.2], [0.1, 0.2, 0.7], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(Head("three_class").score(probs), [0.5, 0.8, 0.0])


def test_an_unknown_head_or_a_zero_horizon_is_a_config_error():
    with pytest.raises(ConfigError, match="label.kind = 'price'"):
        Head("price")
    with pytest.raises(ConfigError, match="label.horizon must be at least 1"):
        Head("direction", horizon=0)


def test_regression_metrics_on_known_numbers():
    y = np.array([0.01, -0.02, 0.03, 0.0, -0.01])
    p = np.array([0.02, -0.01, -0.005, 0.01, -0.02])
    m = regression_metrics(y, p)
    assert m["mse"] == pytest.approx(np.mean((y - p) ** 2))
    assert m["mae"] == pytest.approx(np.mean(np.abs(y - p)))
    assert m["directional_accuracy"] == pytest.approx(3 / 4)  # the zero return is left out
    # ranks y 4,1,5,3,2 and p 5,2,3,4,1: rho = 1 - 6 * 8 / (5 * 24)
    assert m["ic_spearman"] == pytest.approx(0.6)


def test_multiclass_metrics_confusion_matrix_rows_are_actual_classes():
    y = np.array([0, 1, 2, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]])
    m = multiclass_metrics(y, probs)
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(0.5)
    # One-vs-rest AUC, the share of (positive, negative) pairs ranked right, ties half:
    # class 0: 0.7 above 0.1, 0.1, 0.5 -> 3/3; class 1: 0.3 above 0.2, 0.1, tied with 0.3 ->
    # 2.5/3; class 2: 0.8 above 0.1, 0.6 and 0.2 above 0.1 only -> 3/4. Macro average:
    assert m["roc_auc"] == pytest.approx((1 + 2.5 / 3 + 3 / 4) / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.8, 0.2])))

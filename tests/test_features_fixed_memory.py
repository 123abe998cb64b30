"""The full-history path of the recursive features (RSI, ATR, EMA distance) is one convolution
per feature; it must give the definition's numbers: TA-Lib on each trailing window of
``memory x period`` bars, last value, as the bar-by-bar path computes it."""

from __future__ import annotations

import numpy as np
import pytest

from kerastrader.models.features import COLUMNS, as_arrays, parse_feature
from tests.conftest import random_walk_bars

RECURSIVE = [
    "rsi_2", "rsi_14", "rsi_30", "atr_1", "atr_2", "atr_14",
    "ema_dist_2", "ema_dist_12", "ema_2", "ema_12",
]  # fmt: skip


def by_definition(feature, bars) -> np.ndarray:
    """TA-Lib on the trailing ``lookback`` bars at every bar: what the feature means."""
    n, m = len(bars["close"]), feature.lookback
    out = np.full(n, np.nan)
    for t in range(m - 1, n):
        window = {k: bars[k][t - m + 1 : t + 1] for k in feature.spec.columns}
        out[t] = feature.spec.fn(window, feature.period)[-1]
    return out


def flat_then_tiny_moves(n: int = 400) -> dict[str, np.ndarray]:
    """A flat stretch (RSI's 0/0 case), then moves of one ulp-sized step."""
    bars = {c: np.full(n, 10.0) for c in COLUMNS}
    bars["close"][n // 2 :] += 1e-12 * (np.arange(n - n // 2) % 3)
    bars["high"] = np.maximum(bars["high"], bars["close"])
    return bars


@pytest.mark.parametrize("name", RECURSIVE)
@pytest.mark.parametrize("memory", [1, 4, 10])
def test_convolution_equals_talib_on_every_trailing_window(name, memory, orcl):
    feature = parse_feature(name, memory)
    cases = {
        "orcl": as_arrays(orcl.iloc[:1500]),
        "random walk": as_arrays(random_walk_bars(700, seed=memory)),
        "flat": flat_then_tiny_moves(),
    }
    for label, bars in cases.items():
        got, want = feature.compute(bars), by_definition(feature, bars)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=label)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=label)


@pytest.mark.parametrize("name", ["rsi_14", "atr_14", "ema_dist_12"])
def test_bars_with_a_hole_take_the_definition_itself(name):
    """TA-Lib skips leading NaNs of a window and carries later ones: with a hole in the bars
    the full-history path is TA-Lib per window, exactly."""
    feature = parse_feature(name, 4)
    bars = {k: v.copy() for k, v in as_arrays(random_walk_bars(300, seed=3)).items()}
    bars["close"][120] = np.nan
    np.testing.assert_array_equal(feature.compute(bars), by_definition(feature, bars))


def test_rsi_of_a_flat_window_is_talibs_zero():
    feature = parse_feature("rsi_14", 2)
    bars = {c: np.full(60, 10.0) for c in COLUMNS}
    got = feature.compute(bars)
    assert np.isnan(got[: feature.lookback - 1]).all()
    np.testing.assert_array_equal(got[feature.lookback - 1 :], -1.0)  # RSI 0, scaled

"""The recursive features (RSI, ATR, EMA distance, EMA) are compiled kernels that weigh the
trailing window of ``memory x period`` bars; they must give the definition's numbers: TA-Lib on
each trailing window, last value."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from kerastrader.models.features import COLUMNS, as_arrays, parse_feature
from tests.conftest import random_walk_bars

RECURSIVE = [
    "rsi_2", "rsi_14", "rsi_30", "atr_1", "atr_2", "atr_14",
    "ema_dist_2", "ema_dist_12", "ema_2", "ema_12",
]  # fmt: skip


def talib_last(kind: str, w: dict[str, np.ndarray], n: int) -> float:
    """TA-Lib's value at the last bar of the window ``w``."""
    if kind == "rsi":
        return talib.RSI(w["close"], n)[-1] / 50.0 - 1.0
    if kind == "atr":
        return talib.ATR(w["high"], w["low"], w["close"], n)[-1] / w["close"][-1]
    if kind == "ema_dist":
        return w["close"][-1] / talib.EMA(w["close"], n)[-1] - 1.0
    if kind == "ema":
        return talib.EMA(w["close"], n)[-1]
    raise AssertionError(kind)


def by_definition(feature, bars) -> np.ndarray:
    """TA-Lib on the trailing ``lookback`` bars at every bar: what the feature means."""
    n, m = len(bars["close"]), feature.lookback
    out = np.full(n, np.nan)
    for t in range(m - 1, n):
        window = {k: bars[k][t - m + 1 : t + 1] for k in ("high", "low", "close")}
        out[t] = talib_last(feature.kind, window, feature.period)
    return out


def flat_then_tiny_moves(n: int = 400) -> dict[str, np.ndarray]:
    """A flat stretch (RSI's 0/0 case), then moves of one ulp-sized step."""
    bars = {c: np.full(n, 10.0) for c in COLUMNS}
    bars["close"][n // 2 :] += 1e-12 * (np.arange(n - n // 2) % 3)
    bars["high"] = np.maximum(bars["high"], bars["close"])
    return bars


@pytest.mark.parametrize("name", RECURSIVE)
@pytest.mark.parametrize("memory", [1, 4, 10])
def test_kernel_equals_talib_on_every_trailing_window(name, memory, orcl):
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
def test_bars_with_a_hole_are_nan_while_the_hole_is_in_the_window(name):
    """A missing close: NaN for every window that holds it, the definition's value before and
    after (TA-Lib's own handling of a NaN inside a window is not what a feature means)."""
    feature = parse_feature(name, 4)
    bars = {k: v.copy() for k, v in as_arrays(random_walk_bars(300, seed=3)).items()}
    bars["close"][120] = np.nan
    got, want = feature.compute(bars), by_definition(feature, bars)
    m = feature.lookback
    assert np.isnan(got[120 : 120 + m]).all()  # an ATR window also needs the close before
    finite = np.r_[m - 1 : 120, 120 + m : 300]
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-12)


def test_rsi_of_a_flat_window_is_talibs_zero():
    feature = parse_feature("rsi_14", 2)
    bars = {c: np.full(60, 10.0) for c in COLUMNS}
    got = feature.compute(bars)
    assert np.isnan(got[: feature.lookback - 1]).all()
    np.testing.assert_array_equal(got[feature.lookback - 1 :], -1.0)  # RSI 0, scaled

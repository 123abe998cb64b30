"""Features are causal and the bar-by-bar path gives the full-history path's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kerastrader.errors import ConfigError
from kerastrader.models.features import KINDS, FeatureSet, as_arrays
from tests.conftest import random_walk_bars

DEFAULT = [
    "logret_1",
    "logret_5",
    "logret_20",
    "rsi_14",
    "bbp_20",
    "atr_14",
    "sma_dist_10",
    "sma_dist_50",
    "volume_z_20",
]
EVERY_KIND = DEFAULT + ["rvol_20", "ema_dist_12"]
N_BARS = 260


@settings(max_examples=40, deadline=None)
@given(
    t=st.integers(min_value=0, max_value=N_BARS - 2),
    seed=st.integers(min_value=0, max_value=10_000),
    data=st.data(),
)
def test_changing_bars_after_t_moves_no_feature_at_or_before_t(t, seed, data):
    bars = random_walk_bars(N_BARS, seed=seed)
    fs = FeatureSet(EVERY_KIND, memory=4)
    before = fs.compute(bars)

    future = N_BARS - t - 1
    price_shock = data.draw(arrays(np.float64, future, elements=st.floats(0.2, 5.0)))
    volume_shock = data.draw(arrays(np.float64, future, elements=st.floats(0.0, 50.0)))
    changed = bars.copy()
    for col in ("open", "high", "low", "close"):
        changed.iloc[t + 1 :, changed.columns.get_loc(col)] *= price_shock
    changed.iloc[t + 1 :, changed.columns.get_loc("volume")] *= volume_shock
    after = fs.compute(changed)

    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])


def test_last_row_from_the_look_back_equals_full_history_path_on_real_data(orcl):
    fs = FeatureSet(EVERY_KIND, memory=10)
    full = fs.compute(orcl)
    arrays_ = as_arrays(orcl)
    step = np.array(
        [fs.compute_last({k: v[: t + 1] for k, v in arrays_.items()}) for t in range(len(orcl))]
    )
    assert np.isnan(step[: fs.lookback - 1]).all()
    assert not np.isnan(step[fs.lookback - 1 :]).any()
    np.testing.assert_allclose(step, full, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_bar_by_bar_stream_equals_full_history_path_on_real_data(orcl):
    """The live path: one bar at a time into a FeatureStream, each row as it comes."""
    fs = FeatureSet(EVERY_KIND, memory=10)
    stream = fs.stream()
    rows = []
    for o, h, lo, c, v in orcl[["open", "high", "low", "close", "volume"]].to_numpy():
        stream.bar[:5] = (o, h, lo, c, v)
        stream.step()
        rows.append(stream.row.copy())
    np.testing.assert_allclose(np.array(rows), fs.compute(orcl), rtol=1e-9, atol=1e-12)


def test_recursive_features_do_not_depend_on_where_the_series_starts(orcl):
    """A live session warmed up on `lookback` bars sees the backtest's numbers (1995 start)."""
    fs = FeatureSet(["rsi_14", "atr_14", "ema_dist_12"], memory=10)
    full = fs.compute(orcl)
    t = 3000
    live = fs.compute(orcl.iloc[t - fs.lookback + 1 : t + 1])
    np.testing.assert_allclose(live[-1], full[t], rtol=1e-12)


def test_plain_talib_rsi_does_depend_on_the_start_which_is_why_memory_exists(orcl):
    close = orcl["close"].to_numpy()
    from_1995 = talib.RSI(close, 14)[3000]
    from_warmup = talib.RSI(close[3000 - 139 : 3001], 14)[-1]
    assert abs(from_1995 - from_warmup) > 1e-6


def test_lookback_is_memory_times_period_for_recursive_features():
    assert FeatureSet(["rsi_14"], memory=10).lookback == 140
    assert FeatureSet(["sma_dist_50"], memory=10).lookback == 50
    assert FeatureSet(["logret_20"], memory=10).lookback == 21
    assert FeatureSet(DEFAULT, memory=10).lookback == 140


def test_rows_before_the_lookback_are_nan_and_after_are_finite(orcl):
    fs = FeatureSet(DEFAULT)
    feats = fs.compute(orcl)
    assert np.isnan(feats[: fs.lookback - 1]).all()
    assert np.isfinite(feats[fs.lookback - 1 :]).all()


def test_log_return_formula():
    bars = random_walk_bars(30, seed=3)
    out = FeatureSet(["logret_5"]).compute(bars)[:, 0]
    close = bars["close"].to_numpy()
    assert out[10] == pytest.approx(np.log(close[10] / close[5]))
    assert np.isnan(out[4])


def test_constant_volume_gives_zero_z_score_not_nan():
    bars = random_walk_bars(40, seed=1)
    bars["volume"] = 0.0
    out = FeatureSet(["volume_z_20"]).compute(bars)[:, 0]
    assert (out[19:] == 0.0).all()


def test_unknown_feature_is_a_config_error_listing_known_ones():
    with pytest.raises(ConfigError, match="unknown feature 'rsi14'.*rsi_N"):
        FeatureSet(["rsi14"])


def test_every_declared_kind_parses():
    for kind in KINDS:
        assert FeatureSet([f"{kind}_5"]).features[0].kind == kind

"""The compiled feature kernels: TA-Lib's numbers over the full history, and the one-bar
update (FeatureStream) giving the full-history rows bar by bar.

Expected values come from TA-Lib and numpy formulas written out here (the recursive kinds'
per-window TA-Lib definition is in test_features_fixed_memory.py), never from the kernels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from kerastrader.models import features as feature_module
from kerastrader.models.feature_stream import BAR_FIELDS
from kerastrader.models.features import FeatureSet, as_arrays, parse_feature
from kerastrader.models.scaler import FittedScaler
from tests.conftest import random_walk_bars

DEFAULT = ["logret_1", "logret_5", "logret_20", "rsi_14", "bbp_20", "atr_14", "sma_dist_10",
           "sma_dist_50", "volume_z_20"]  # fmt: skip
EVERY_CAUSAL_KIND = DEFAULT + ["rvol_20", "ema_dist_12", "pctret_3", "slope_4", "mom_6",
                               "dpo_20", "sma_15", "ema_9"]  # fmt: skip


def shifted(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    out[n:] = x[:-n]
    return out


def talib_reference(kind: str, b: dict[str, np.ndarray], n: int) -> np.ndarray:
    """What each non-recursive kind means, by TA-Lib and numpy over the full history."""
    c, v = b["close"], b["volume"]
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "logret":
            return np.log(c / shifted(c, n))
        if kind == "pctret":
            return c / shifted(c, n) - 1.0
        if kind == "slope":
            return (c - shifted(c, n)) / n / c
        if kind == "mom":
            return (c / shifted(c, n) - 1.0) / n
        if kind == "sma":
            return talib.SMA(c, n)
        if kind == "sma_dist":
            return c / talib.SMA(c, n) - 1.0
        if kind == "dpo":
            return (shifted(c, n // 2 + 1) - talib.SMA(c, n)) / c
        if kind == "bbp":
            upper, _, lower = talib.BBANDS(c, n, 2.0, 2.0)
            return np.where(upper - lower > 0, (c - lower) / (upper - lower), 0.5)
        if kind == "rvol":
            r = np.log(c / shifted(c, 1))
            return talib.STDDEV(r, n, 1.0) * np.sqrt(n / (n - 1.0))
        if kind == "volume_z":
            std = talib.STDDEV(v, n, 1.0)
            return np.where(std > 0, (v - talib.SMA(v, n)) / std, 0.0)
    raise AssertionError(kind)


NON_RECURSIVE = ["logret", "pctret", "slope", "mom", "sma", "sma_dist", "dpo", "bbp", "rvol",
                 "volume_z"]  # fmt: skip


@pytest.mark.parametrize("kind", NON_RECURSIVE)
@pytest.mark.parametrize("period", [2, 5, 20])
def test_kernel_equals_talib_over_the_full_history(kind, period, orcl):
    feature = parse_feature(f"{kind}_{period}", 10)
    for label, frame in (("orcl", orcl), ("random walk", random_walk_bars(800, seed=period))):
        bars = as_arrays(frame)
        want = talib_reference(kind, bars, period)
        want[: feature.lookback - 1] = np.nan
        got = feature.compute(bars)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=label)
        # atol 1e-10: TA-Lib's BBANDS carries rounding of a few 1e-12 (ORCL and random walks;
        # where they differ most, the kernel matches exact rational arithmetic to 1e-16).
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10, err_msg=label)


def test_a_constant_window_has_zero_spread_whatever_its_mean_rounds_to():
    """0.1 twenty times does not sum to exactly 2.0: the rounding is no volatility."""
    bars = {c: np.full(60, 0.1) for c in ("open", "high", "low", "close", "volume")}
    got = FeatureSet(["bbp_20", "volume_z_20", "rvol_20"]).compute(bars)
    np.testing.assert_array_equal(got[21:], np.tile([0.5, 0.0, 0.0], (39, 1)))


def stream_rows(fs: FeatureSet, bars: dict[str, np.ndarray]) -> np.ndarray:
    """Every bar pushed through a stream, one step each, as Backtrader's next() does."""
    stream = fs.stream()
    stream.seed({c: v[:1] for c, v in bars.items()})
    rows = [stream.row.copy()]
    for t in range(1, len(bars["close"])):
        for j, name in enumerate(BAR_FIELDS):
            if name in bars:
                stream.bar[j] = bars[name][t]
        stream.step()
        rows.append(stream.row.copy())
    return np.array(rows)


def test_one_bar_updates_give_the_full_history_rows(orcl):
    fs = FeatureSet(EVERY_CAUSAL_KIND, memory=10)
    bars = {c: orcl[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close", "volume")}
    got = stream_rows(fs, bars)  # 5,036 bars: the buffer is compacted about 20 times
    want = fs.compute(orcl)
    assert np.isnan(got[: fs.lookback - 1]).all()
    assert np.isfinite(got[fs.lookback - 1 :]).all()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def dividend_bars(n: int, seed: int) -> pd.DataFrame:
    bars = random_walk_bars(n, seed=seed)
    rng = np.random.default_rng(seed)
    paid = rng.random(n) < 0.05
    bars["dividend"] = np.where(paid, bars["close"].shift(1).fillna(0.0) * 0.01, 0.0)
    bars["split"] = 1.0
    bars.iloc[n // 2, bars.columns.get_loc("split")] = 2.0  # a 2-for-1 split in the prices
    for col in ("open", "high", "low", "close"):
        bars.iloc[n // 2 :, bars.columns.get_loc(col)] /= 2.0
    return bars


def test_one_bar_updates_with_dividends_and_a_split_give_the_total_return_rows():
    fs = FeatureSet(EVERY_CAUSAL_KIND[:-2], memory=5)  # sma/ema are price levels: not ratios
    frame = dividend_bars(600, seed=4)
    bars = {c: frame[c].to_numpy(dtype=float) for c in BAR_FIELDS}
    np.testing.assert_allclose(stream_rows(fs, bars), fs.compute(frame), rtol=1e-9,
                               atol=1e-12)  # fmt: skip


def test_a_stream_seeded_on_a_live_backfill_gives_the_backtests_window(orcl):
    """Fixed memory: lookback + window - 1 bars of history are all a live session needs."""
    fs = FeatureSet(DEFAULT, memory=10)
    feats = fs.compute(orcl)
    scaler = FittedScaler.fit(feats[fs.lookback - 1 : 2000])
    window = 30
    t = 4000
    want = scaler.transform(feats[t - window + 1 : t + 1]).astype(np.float32)
    stream = fs.stream(scaler, window)
    backfill = orcl.iloc[t - stream.seed_size + 1 : t + 1]
    assert stream.seed({c: backfill[c].to_numpy() for c in ("open", "high", "low", "close",
                                                             "volume")})  # fmt: skip
    np.testing.assert_allclose(stream.window, want, rtol=1e-6)


def test_a_window_is_not_ready_until_it_has_no_nan_row(orcl):
    fs = FeatureSet(["rsi_14"], memory=2)  # lookback 28
    stream = fs.stream(None, 5)
    bars = {c: orcl[c].to_numpy()[:40] for c in ("open", "high", "low", "close", "volume")}
    assert not stream.seed({c: v[:31] for c, v in bars.items()})  # 4 finite rows of 5
    assert stream.seed({c: v[:32] for c, v in bars.items()})


def test_a_hole_gives_nan_while_it_is_in_the_window_in_both_paths():
    fs = FeatureSet(["rsi_14", "sma_dist_10", "logret_1"], memory=2)
    frame = random_walk_bars(120, seed=9)
    frame.iloc[60, frame.columns.get_loc("close")] = np.nan
    bars = {c: frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    full, step = fs.compute(frame), stream_rows(fs, bars)
    np.testing.assert_array_equal(np.isnan(full), np.isnan(step))
    np.testing.assert_allclose(step, full, rtol=1e-9, atol=1e-12)
    rsi, sma, logret = full[:, 0], full[:, 1], full[:, 2]
    assert np.isnan(rsi[60 : 60 + 28]).all() and np.isfinite(rsi[60 + 28 :]).all()
    assert np.isnan(sma[60:70]).all() and np.isfinite(sma[70:]).all()
    assert np.isnan(logret[60:62]).all() and np.isfinite(logret[62:]).all()


def _range_ratio(b, n):
    """A plain-function kind: (high - low) / close averaged over n bars (numpy only)."""
    r = (b["high"] - b["low"]) / b["close"]
    out = np.full(len(r), np.nan)
    out[n - 1 :] = np.convolve(r, np.ones(n) / n, mode="valid")
    return out


def test_a_kind_registered_as_a_plain_function_is_served_bar_by_bar_too(monkeypatch, orcl):
    monkeypatch.setitem(
        feature_module.KINDS,
        "hlrange",
        feature_module._Kind(
            _range_ratio,
            ("high", "low", "close"),
            False,
            1,
            lambda n: n,
            "mean (high - low) / close",
        ),  # fmt: skip
    )
    fs = FeatureSet(["rsi_14", "hlrange_5", "logret_1"], memory=4)
    frame = orcl.iloc[:400]
    bars = {c: frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    want = fs.compute(frame)
    np.testing.assert_allclose(want[100:, 1], _range_ratio(bars, 5)[100:], rtol=1e-12)
    np.testing.assert_allclose(stream_rows(fs, bars), want, rtol=1e-9, atol=1e-12)

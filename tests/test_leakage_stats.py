"""The leakage alarm's statistic alone (no model): Newey-West by hand, and the false-alarm rate
on random walks with persistent but uninformed predictions near the nominal level."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy.signal import lfilter
from sklearn.metrics import roc_auc_score

from kerastrader.models.leakage_stats import (
    auc_score,
    hac_lag,
    hit_rate_score,
    newey_west_variance,
    two_sided_p,
)

DRAWS = 400
BARS = 1000
PERSISTENCE = 0.98  # AR(1) coefficient of the uninformed prediction: about 50 bars of memory
NOMINAL_Z = 1.959964  # two-sided 5%
# 400 draws at a true 5%: the binomial standard deviation is 1.1 points; 2% .. 9% is about
# -2.8 .. +3.7 of them, and still holds for the ~6% the Bartlett weights leave at h = 5.
LOW, HIGH = 0.02, 0.09


def test_newey_west_matches_a_hand_worked_number():
    # x = 1, 2, 3, 4: e = -1.5, -0.5, 0.5, 1.5; gamma_0 = 5/4, gamma_1 = (0.75 - 0.25 + 0.75)/4
    # = 5/16, gamma_2 = (-0.75 - 0.75)/4 = -3/8. Lag 2: weights 2/3 and 1/3, so
    # S = 5/4 + 2 * (2/3 * 5/16) + 2 * (1/3 * -3/8) = 5/4 + 5/12 - 1/4 = 17/12.
    assert newey_west_variance(np.array([1.0, 2.0, 3.0, 4.0]), 2) == pytest.approx(17 / 12)


def test_newey_west_about_a_given_mean():
    # x = 1, 0, 1, 1 about 0.5: e = +-0.5, so gamma_0 = 1/4; gamma_1 = (-1 - 1 + 1)/4 * 1/4
    # = -1/16; lag 1 weight 1/2: S = 1/4 + 2 * 1/2 * -1/16 = 3/16.
    x = np.array([1.0, 0.0, 1.0, 1.0])
    assert newey_west_variance(x, 1, mean=0.5) == pytest.approx(3 / 16)


def test_lag_zero_is_the_iid_variance():
    x = np.random.default_rng(0).normal(size=50)
    assert newey_west_variance(x, 0) == pytest.approx(np.var(x))


def test_the_pooled_auc_is_sklearns_with_ties():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=300), 1)  # many ties
    y = (rng.random(300) < 0.5 + 0.2 * np.tanh(s)).astype(float)
    got = auc_score([(s[:120], y[:120]), (s[120:], y[120:])], horizon=1)
    assert got.estimate == pytest.approx(roc_auc_score(y, s))


def test_the_lag_covers_the_overlap_of_h_bar_labels():
    # 4h lags: past the h - 1 bars an h-bar label overlaps, with room for the Bartlett weights.
    assert [hac_lag(h) for h in (1, 5, 20)] == [4, 20, 80]


def _persistent(rng: np.random.Generator, n: int) -> np.ndarray:
    """A slowly varying series with unit variance that knows nothing about any walk."""
    noise = rng.normal(size=n + 200)
    return lfilter([math.sqrt(1 - PERSISTENCE**2)], [1.0, -PERSISTENCE], noise)[200:]


@functools.cache
def _null_draws(horizon: int) -> dict[str, np.ndarray]:
    """Corrected and naive |z| of both statistics over DRAWS random walks, two instruments
    each, every prediction independent of the walk's future."""
    rng = np.random.default_rng(20261111 + horizon)
    out: dict[str, list[float]] = {"accuracy": [], "accuracy naive": [], "auc": [], "auc naive": []}
    for _ in range(DRAWS):
        series = []
        for _ in range(2):
            log_close = np.cumsum(rng.normal(size=BARS + horizon))
            up = (log_close[horizon:] > log_close[:-horizon]).astype(float)
            series.append((_persistent(rng, BARS), up))
        hits = hit_rate_score([((p > 0).astype(float), y) for p, y in series], horizon)
        auc = auc_score(series, horizon)
        out["accuracy"].append(abs(hits.z))
        out["accuracy naive"].append(abs(hits.naive_z))
        out["auc"].append(abs(auc.z))
        out["auc naive"].append(abs(auc.naive_z))
    return {k: np.array(v) for k, v in out.items()}


def _false_alarms(horizon: int, statistic: str) -> float:
    return float(np.mean(_null_draws(horizon)[statistic] > NOMINAL_Z))


@pytest.mark.parametrize("statistic", ["accuracy", "auc"])
@pytest.mark.parametrize("horizon", [1, 5])
def test_the_false_alarm_rate_is_near_the_nominal_level(horizon, statistic):
    rate = _false_alarms(horizon, statistic)
    assert LOW <= rate <= HIGH, f"h={horizon} {statistic}: {rate:.3f} false alarms at 5%"


@pytest.mark.parametrize("statistic", ["accuracy", "auc"])
def test_the_naive_standard_error_over_alarms_with_overlapping_labels(statistic):
    # The same draws with sqrt(0.25 / n) (or Hanley-McNeil): measured about 28-31% at h = 5.
    assert _false_alarms(5, f"{statistic} naive") > 0.15


def test_an_informed_call_is_far_beyond_three_sigma():
    rng = np.random.default_rng(3)
    log_close = np.cumsum(rng.normal(size=2005))
    up = (log_close[5:] > log_close[:-5]).astype(float)
    knows = rng.random(2000) < 0.2  # right for sure on a fifth of the bars, a coin otherwise
    calls = np.where(knows, up, rng.random(2000) < 0.5).astype(float)
    assert hit_rate_score([(calls, up)], horizon=5).z > 3.0


def test_two_sided_p_of_the_nominal_z_is_five_percent():
    assert two_sided_p(NOMINAL_Z) == pytest.approx(0.05, abs=1e-6)

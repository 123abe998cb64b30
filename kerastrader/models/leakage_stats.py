"""The leakage alarm's statistics: direction calls scored with standard errors that survive
overlapping labels.

With a horizon of h bars, the labels of bars t and t+1 share h-1 of their future returns, and
a model's predictions are persistent (a window moves one bar at a time), so consecutive
"was the call right" outcomes are correlated even when the model knows nothing. The iid
standard error, sqrt(0.25 / n), is then too small and a pipeline without a leak "fails" the
test far more often than the nominal level says (measured in ``tests/test_leakage_stats.py``:
about 28% instead of 5% for h = 5). Under the null hypothesis (predictions independent of the
future) the correlation of those outcomes is exactly zero beyond lag h-1, so a Newey-West
(HAC) long-run variance over a few multiples of h lags gives the right standard error.

Pure numpy: no model, no data loading, so the calibration can be tested on generated series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LAG_PER_HORIZON = 4  # Newey-West lag = 4 * horizon; see hac_lag


def hac_lag(horizon: int) -> int:
    """The Newey-West truncation lag for h-bar labels: ``4 * h``.

    Under the null the outcome autocovariances vanish beyond lag h-1, so any lag of at least
    h-1 covers them; but the Bartlett weights 1 - k/(L+1) shrink the lags that matter, and at
    L = h-1 the variance of persistent predictions comes out about 30% low (a 9-10% false-alarm
    rate at a nominal 5% for h = 5). At L = 4h the shrinkage is at most (h-1)/(4h+1) per lag
    and the measured rate is about 6%; more lags would add noise for little bias.
    """
    return LAG_PER_HORIZON * int(horizon)


def newey_west_variance(x: np.ndarray, lag: int, mean: float | None = None) -> float:
    """Newey-West (1987) long-run variance of the series ``x`` with a Bartlett kernel.

    With e_t = x_t - m (m = ``mean``, or the sample mean when None), n = len(x) and
    gamma_k = (1/n) * sum_{t=k}^{n-1} e_t * e_{t-k}:

        S = gamma_0 + 2 * sum_{k=1}^{L} (1 - k / (L + 1)) * gamma_k

    so that Var(mean of x) is about S / n. L = ``lag`` (0 gives the iid variance gamma_0);
    lags at or beyond n contribute nothing. The Bartlett weights keep S non-negative.
    Passing the null mean as ``mean`` (a score test) avoids the downward bias that estimating
    the mean brings into every gamma_k.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0:
        return math.nan
    e = x - (float(np.mean(x)) if mean is None else float(mean))
    s = float(e @ e) / n
    for k in range(1, min(int(lag), n - 1) + 1):
        s += 2.0 * (1.0 - k / (lag + 1.0)) * float(e[k:] @ e[:-k]) / n
    return s


def two_sided_p(z: float) -> float:
    """P(|N(0, 1)| >= |z|)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


@dataclass(frozen=True)
class Score:
    """One statistic against its null value, with the HAC and the naive (iid) standard error."""

    name: str
    estimate: float
    null: float
    se: float  # Newey-West
    naive_se: float  # as if the n outcomes were independent
    n: int
    lag: int

    @property
    def z(self) -> float:
        return (self.estimate - self.null) / self.se if self.se > 0 else 0.0

    @property
    def naive_z(self) -> float:
        return (self.estimate - self.null) / self.naive_se if self.naive_se > 0 else 0.0

    @property
    def p_value(self) -> float:
        return two_sided_p(self.z)


def _series(
    series: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for first, second in series:
        a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"series of different shapes: {a.shape} and {b.shape}")
        if len(a):
            out.append((a, b))
    return out


def hit_rate_score(
    series: Sequence[tuple[np.ndarray, np.ndarray]], horizon: int, lag: int | None = None
) -> Score:
    """How often up/down calls match the outcomes, against the coin's 0.5.

    ``series`` holds one (calls, outcomes) pair per instrument, each in time order, both
    0/1 (1 = up). With hit_t = 1 if call_t == outcome_t, the rate is the mean over all pairs
    and Var(rate) = sum_i n_i * S_i / n**2, S_i the Newey-West variance of instrument i's
    hits about 0.5 (lag ``hac_lag(horizon)`` unless given): instruments are independent
    random walks, so only each one's own autocovariances count. 0.5 is exact under the null
    for a driftless walk, P(up) = 1/2 whatever the calls.
    """
    lag = hac_lag(horizon) if lag is None else int(lag)
    pairs = _series(series)
    hits = [(c > 0.5) == (o > 0.5) for c, o in pairs]
    n = sum(len(h) for h in hits)
    if n == 0:
        return Score("accuracy", math.nan, 0.5, math.nan, math.nan, 0, lag)
    rate = sum(float(h.sum()) for h in hits) / n
    var = sum(len(h) * newey_west_variance(h.astype(float), lag, mean=0.5) for h in hits) / n**2
    return Score("accuracy", rate, 0.5, math.sqrt(var), math.sqrt(0.25 / n), n, lag)


def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their ranks."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auc_score(
    series: Sequence[tuple[np.ndarray, np.ndarray]], horizon: int, lag: int | None = None
) -> Score:
    """ROC AUC of the scores for the 0/1 outcomes, pooled over instruments, against 0.5.

    ``series`` holds one (scores, outcomes) pair per instrument in time order. The standard
    error is DeLong's, made HAC. Let V_t be DeLong's placement value of bar t: for an up bar
    the fraction of down bars its score beats, for a down bar the fraction of up bars scoring
    above it (ties count 1/2). To first order (the U-statistic's projection) AUC varies like
    the mean of psi_t = n * (V_t - 0.5) / n1 for up bars and n * (V_t - 0.5) / n0 for down
    bars, so Var(AUC) = sum_i n_i * S_i / n**2 with S_i the Newey-West variance of instrument
    i's psi about 0. At lag 0 this is DeLong's variance, sum (V - 0.5)**2 / n1**2 over up bars
    plus the same over down bars with n0; the naive standard error is Hanley and McNeil's at
    AUC = 0.5, sqrt((n + 1) / (12 * n0 * n1)).
    """
    lag = hac_lag(horizon) if lag is None else int(lag)
    pairs = _series(series)
    if not pairs:
        return Score("roc_auc", math.nan, 0.5, math.nan, math.nan, 0, lag)
    scores = np.concatenate([s for s, _ in pairs])
    up = np.concatenate([o for _, o in pairs]) > 0.5
    n, n1 = len(up), int(up.sum())
    n0 = n - n1
    if n0 == 0 or n1 == 0:
        return Score("roc_auc", math.nan, 0.5, math.nan, math.nan, n, lag)
    rank_all = _midranks(scores)
    rank_own = np.empty(n)
    rank_own[up] = _midranks(scores[up])
    rank_own[~up] = _midranks(scores[~up])
    below_other = rank_all - rank_own  # how many of the other class score below (ties 1/2)
    v = np.where(up, below_other / n0, 1.0 - below_other / n1)
    auc = float(v[up].mean())
    psi = np.where(up, n * (v - 0.5) / n1, n * (v - 0.5) / n0)
    var, start = 0.0, 0
    for s, _ in pairs:
        part = psi[start : start + len(s)]
        var += len(part) * newey_west_variance(part, lag, mean=0.0)
        start += len(s)
    naive = math.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))
    return Score("roc_auc", auc, 0.5, math.sqrt(var / n**2), naive, n, lag)

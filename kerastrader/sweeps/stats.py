"""How much of the best configuration's Sharpe ratio is luck.

Trying N configurations and keeping the best one selects the luckiest as much as the best: of
100 strategies with no edge at all, the best in-sample Sharpe ratio is about 2.5 standard
errors above zero. Two published statistics correct for that, both computed here from the
trials' daily returns:

- The deflated Sharpe ratio (Bailey and Lopez de Prado, "The Deflated Sharpe Ratio: Correcting
  for Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management
  40(5), 2014): the probability that the best trial's true Sharpe ratio is above the highest
  Sharpe ratio that N trials with no edge would be expected to show, given the trials' Sharpe
  variance, the best trial's skewness and kurtosis, and the number of returns.
- The probability of backtest overfitting by combinatorially symmetric cross-validation
  (Bailey, Borwein, Lopez de Prado and Zhu, "The Probability of Backtest Overfitting", Journal
  of Computational Finance 20(4), 2017; working paper 2015): split the dates into S blocks,
  and for every way of choosing half of them as "in sample", pick the best trial in sample and
  see where it ranks among all trials on the other half. PBO is the share of splits in which
  it ranks at or below the median out of sample.

Sharpe ratios here are per period (per day for daily returns), not annualised, as the
formulas use them; multiply by sqrt(periods per year) to annualise.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

EULER_GAMMA = 0.5772156649015329


def sharpe(returns: np.ndarray) -> float:
    """Per-period Sharpe ratio, mean over sample standard deviation (0 for a flat series)."""
    r = np.asarray(returns, dtype=float)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r)) / sd if sd > 0 else 0.0


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR0: the expected maximum Sharpe ratio of ``n_trials`` independent trials with no edge
    whose Sharpe estimates have variance ``sharpe_variance`` (Bailey and Lopez de Prado 2014,
    after the false strategy theorem):

        SR0 = sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))

    with g the Euler-Mascheroni constant and Z^-1 the standard normal quantile.
    """
    if n_trials < 2 or sharpe_variance <= 0:
        return 0.0
    n = float(n_trials)
    z1 = sps.norm.ppf(1.0 - 1.0 / n)
    z2 = sps.norm.ppf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe(
    sr: float, benchmark: float, n_returns: int, skew: float, kurtosis: float
) -> float:
    """PSR: the probability that the true Sharpe ratio exceeds ``benchmark``, given the
    estimate ``sr`` from ``n_returns`` returns with that skewness and (non-excess) kurtosis:

        PSR = Z((sr - benchmark) * sqrt(T - 1) / sqrt(1 - skew * sr + (kurtosis - 1) / 4 * sr^2))
    """
    if n_returns < 2:
        return float("nan")
    denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if denom <= 0:
        return float("nan")
    z = (sr - benchmark) * math.sqrt(n_returns - 1) / math.sqrt(denom)
    return float(sps.norm.cdf(z))


@dataclass
class DeflatedSharpe:
    """The deflated Sharpe ratio of the selected trial, with every input that went into it."""

    dsr: float  # probability that the true Sharpe ratio is above sr0
    sharpe: float  # the selected trial's per-period Sharpe ratio
    sr0: float  # expected maximum per-period Sharpe ratio of n_trials trials without edge
    n_trials: int
    sharpe_variance: float  # across the trials' per-period Sharpe ratios
    n_returns: int
    skew: float
    kurtosis: float  # non-excess (3 for normal returns)
    psr_zero: float  # the probabilistic Sharpe ratio against 0 (no deflation)

    @property
    def luck_share(self) -> float:
        """The part of the selected Sharpe ratio that N trials without edge would reach by
        luck alone on average (SR0 / SR, capped at 1)."""
        if self.sharpe <= 0:
            return 1.0
        return float(min(1.0, max(0.0, self.sr0 / self.sharpe)))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "luck_share": self.luck_share}


def deflated_sharpe(
    selected: np.ndarray, trial_sharpes: np.ndarray, n_trials: int | None = None
) -> DeflatedSharpe:
    """The deflated Sharpe ratio of the returns ``selected`` (the best trial's), chosen among
    trials whose per-period Sharpe ratios are ``trial_sharpes``.

    ``n_trials`` defaults to the number of trial Sharpe ratios. Correlated trials (a grid
    over neighbouring thresholds) are fewer independent trials than that, so this default
    overstates SR0 a little and errs on the side of calling a result luck.
    """
    r = np.asarray(selected, dtype=float)
    r = r[np.isfinite(r)]
    srs = np.asarray(trial_sharpes, dtype=float)
    srs = srs[np.isfinite(srs)]
    n = int(n_trials if n_trials is not None else len(srs))
    sr = sharpe(r)
    variance = float(np.var(srs, ddof=1)) if len(srs) > 1 else 0.0
    skew = float(sps.skew(r, bias=True)) if len(r) > 2 and np.std(r) > 0 else 0.0
    kurt = float(sps.kurtosis(r, fisher=False, bias=True)) if len(r) > 3 and np.std(r) > 0 else 3.0
    sr0 = expected_max_sharpe(n, variance)
    return DeflatedSharpe(
        dsr=probabilistic_sharpe(sr, sr0, len(r), skew, kurt),
        sharpe=sr,
        sr0=sr0,
        n_trials=n,
        sharpe_variance=variance,
        n_returns=len(r),
        skew=skew,
        kurtosis=kurt,
        psr_zero=probabilistic_sharpe(sr, 0.0, len(r), skew, kurt),
    )


@dataclass
class Overfitting:
    """The probability of backtest overfitting and the splits behind it."""

    pbo: float  # share of splits whose in-sample best ranks at or below the median out of sample
    n_splits: int  # C(S, S/2)
    blocks: int  # S
    n_trials: int
    n_returns: int
    logits: list[float]  # one per split: ln(w / (1 - w)), w the out-of-sample relative rank

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["logit_median"] = float(np.median(self.logits)) if self.logits else None
        d.pop("logits")
        return d


def probability_of_overfitting(returns: np.ndarray, blocks: int = 16) -> Overfitting:
    """PBO by combinatorially symmetric cross-validation over a T x N matrix of returns
    (one column per trial, rows the same dates).

    The rows are cut into ``blocks`` (S, even) contiguous blocks of equal size (the last
    T mod S rows are dropped, as in the paper). For each of the C(S, S/2) ways to choose S/2
    blocks as the training set J (the rest, J', is the test set): n* is the trial with the
    highest Sharpe ratio on J; its rank r among the N trials on J' (1 = worst, N = best,
    ties averaged) gives w = r / (N + 1) and the logit ln(w / (1 - w)). PBO is the share of
    splits with logit <= 0: the in-sample winner did no better than the median trial out of
    sample. Without any skill PBO is about 0.5; well above 0.5 means the selection picks
    what does worst afterwards.
    """
    m = np.asarray(returns, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("PBO needs a T x N matrix of returns with at least two trials")
    if blocks < 2 or blocks % 2:
        raise ValueError(f"PBO needs an even number of blocks, not {blocks}")
    t, n = m.shape
    size = t // blocks
    if size < 2:
        raise ValueError(f"PBO with {blocks} blocks needs at least {2 * blocks} returns, not {t}")
    m = np.nan_to_num(m[: size * blocks])
    parts = m.reshape(blocks, size, n)
    sums, squares = parts.sum(axis=1), (parts**2).sum(axis=1)  # blocks x n
    logits = []
    for train in itertools.combinations(range(blocks), blocks // 2):
        mask = np.zeros(blocks, dtype=bool)
        mask[list(train)] = True
        is_sr = _block_sharpe(sums[mask].sum(0), squares[mask].sum(0), size * mask.sum())
        os_sr = _block_sharpe(sums[~mask].sum(0), squares[~mask].sum(0), size * (~mask).sum())
        best = int(np.argmax(is_sr))
        rank = float(sps.rankdata(os_sr)[best])
        w = rank / (n + 1.0)
        logits.append(math.log(w / (1.0 - w)))
    logits_arr = np.array(logits)
    return Overfitting(
        pbo=float(np.mean(logits_arr <= 0)),
        n_splits=len(logits),
        blocks=blocks,
        n_trials=n,
        n_returns=size * blocks,
        logits=[float(x) for x in logits_arr],
    )


def _block_sharpe(total: np.ndarray, squares: np.ndarray, count: int) -> np.ndarray:
    """Sharpe ratio of each column from its sum and sum of squares over ``count`` rows."""
    mean = total / count
    var = (squares - count * mean**2) / max(count - 1, 1)
    sd = np.sqrt(np.clip(var, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sd > 0, mean / sd, 0.0)
    return out


def choose_blocks(n_returns: int, wanted: int = 16) -> int:
    """The largest even number of blocks up to ``wanted`` that leaves at least 10 returns a
    block (short backtests get fewer, coarser splits), at least 2."""
    s = min(wanted, n_returns // 10)
    s -= s % 2
    return max(2, s)

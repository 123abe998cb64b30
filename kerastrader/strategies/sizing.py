"""From a prediction to a target weight (fraction of equity), and from a weight to shares.

Pure functions, testable without Backtrader: the strategy calls them once per bar and turns
the result into orders. A weight is signed: +0.5 is long half the equity, -0.2 short a fifth.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 252


def signal_strength(prediction: float, center: float, scale: float) -> float:
    """How far the prediction is from neutral, in [-1, 1]: ``(p - center) / scale``, clipped.

    For a probability ``center`` is 0.5 and ``scale`` the distance that means full conviction
    (0.1: P(up) = 0.6 is a full long); for a predicted return ``center`` is 0.
    """
    if prediction is None or math.isnan(prediction) or scale <= 0:
        return 0.0
    return float(np.clip((prediction - center) / scale, -1.0, 1.0))


def proportional_weight(
    prediction: float, center: float, scale: float, allow_short: bool, size: float
) -> float:
    """Target weight proportional to conviction, up to ``size``; long-only clips at zero."""
    s = signal_strength(prediction, center, scale)
    if not allow_short:
        s = max(s, 0.0)
    return s * size


def realised_volatility(closes: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised standard deviation of the one-bar log returns of ``closes`` (NaN if < 3)."""
    closes = np.asarray(closes, dtype=float)
    closes = closes[np.isfinite(closes) & (closes > 0)]
    if len(closes) < 3:
        return math.nan
    r = np.diff(np.log(closes))
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def volatility_scale(realised: float, target: float, cap: float) -> float:
    """Leverage that brings ``realised`` annual volatility to ``target``, at most ``cap``.

    Zero when volatility is unknown (warm-up): no position rather than an unbounded one.
    """
    if not math.isfinite(realised) or realised <= 0:
        return 0.0
    return float(min(target / realised, cap))


def kelly_fraction_binary(prob_up: float, payoff: float = 1.0) -> float:
    """Kelly's optimal fraction for a bet won with ``prob_up`` paying ``payoff`` per unit lost:
    ``p - (1 - p) / payoff``. Negative means the other side is the bet (a short)."""
    if prob_up is None or math.isnan(prob_up) or payoff <= 0:
        return 0.0
    return float(prob_up - (1.0 - prob_up) / payoff)


def kelly_fraction_continuous(expected_return: float, variance: float) -> float:
    """Kelly's fraction for a continuous return: ``mu / sigma^2`` (per-bar units for both)."""
    if not (math.isfinite(expected_return) and math.isfinite(variance)) or variance <= 0:
        return 0.0
    return float(expected_return / variance)


def kelly_weight(raw_fraction: float, multiplier: float, cap: float, allow_short: bool) -> float:
    """A fractional Kelly bet (``multiplier`` 0.5 = half Kelly), capped at +/- ``cap``."""
    w = raw_fraction * multiplier
    if not allow_short:
        w = max(w, 0.0)
    return float(np.clip(w, -cap, cap))


def apply_limits(weights: np.ndarray, max_position: float, max_gross: float) -> np.ndarray:
    """Clip each weight at +/- ``max_position``, then scale all down together so that gross
    exposure (the sum of absolute weights) is at most ``max_gross``."""
    w = np.clip(np.nan_to_num(np.asarray(weights, dtype=float)), -max_position, max_position)
    gross = float(np.abs(w).sum())
    if gross > max_gross > 0:
        w = w * (max_gross / gross)
    return w


def limit_turnover(current: np.ndarray, target: np.ndarray, limit: float) -> np.ndarray:
    """Move from ``current`` toward ``target`` by at most ``limit`` of total absolute weight
    change (all trades scaled by the same factor); ``limit`` 0 means no limit."""
    current = np.asarray(current, dtype=float)
    target = np.asarray(target, dtype=float)
    delta = target - current
    turnover = float(np.abs(delta).sum())
    if limit <= 0 or turnover <= limit:
        return target.copy()
    return current + delta * (limit / turnover)


def shares_for(weight: float, equity: float, price: float, fractional: bool) -> float:
    """Shares worth ``weight`` of ``equity`` at ``price``; whole shares round toward zero, so a
    target is never exceeded."""
    if price <= 0 or not math.isfinite(price) or equity <= 0:
        return 0.0
    raw = weight * equity / price
    if fractional:
        return float(raw)
    return float(math.trunc(raw))


def expected_move(prob: float, center: float, closes: np.ndarray, horizon: int) -> float:
    """A classifier's probability as an expected return over ``horizon`` bars, the unit a
    round-trip cost is in: ``2 (p - center) x mean |Close[t] / Close[t-h] - 1|`` over the
    recent ``closes``. A move up with probability p and down with 1 - p, each of the typical
    size m, is worth ``(2p - 1) m``; NaN when there is not enough history."""
    closes = np.asarray(closes, dtype=float)
    if prob is None or math.isnan(prob) or len(closes) <= horizon:
        return math.nan
    moves = np.abs(closes[horizon:] / closes[:-horizon] - 1.0)
    moves = moves[np.isfinite(moves)]
    if len(moves) == 0:
        return math.nan
    return float(2.0 * (prob - center) * moves.mean())


def bars_per_year(index: pd.DatetimeIndex, days_per_year: int = PERIODS_PER_YEAR) -> int:
    """Bars in a year of this data, to annualise a per-bar volatility: ``days_per_year`` for
    daily bars, that times the median number of bars in a day for intraday bars (13 half-hour
    bars a New York session make 3,276)."""
    index = pd.DatetimeIndex(index)
    if len(index) < 2 or (index == index.normalize()).all():
        return days_per_year
    per_day = pd.Series(1, index=index).groupby(index.normalize()).size()
    return int(days_per_year * float(per_day.median()))


def covers_costs(predicted_return: float, round_trip: float) -> bool:
    """A regression model's trade is worth taking only if the predicted move (either way)
    exceeds the cost of getting in and out."""
    if predicted_return is None or math.isnan(predicted_return):
        return False
    return abs(predicted_return) > round_trip

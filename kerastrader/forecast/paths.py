"""Forecast paths from an origin: the recursive point path, Monte Carlo bands, a naive bootstrap.

- The point path (the article's forecast): predict the next period, append the prediction to
  the window as if it had happened, predict again, H times. A model fed its own output drifts
  to a fixed point of its map: the path says what the model believes on average, nothing about
  how far a real path strays.
- Residual bootstrap (the model's bands): the same recursion, with a residual of the model
  (drawn with replacement, a whole row for several series) added to each step's prediction
  before it is fed back. N paths advance together: one batched model call per step.
- Naive i.i.d. bootstrap: H periods drawn with replacement from the history up to the origin
  (whole rows for several series), no model. Its median value after H periods is close to
  the history's geometric mean compounded H times.

Values are cumulative: V_0 = 1, V_h = (1 + r_1) ... (1 + r_h) of the portfolio's returns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kerastrader.forecast.model import Forecaster


def portfolio(returns: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """The portfolio's return from the series' last axis: the series itself when it is one
    (the portfolio), else the weighted sum (rebalanced to the weights each period)."""
    returns = np.asarray(returns, dtype=np.float64)
    if weights is None or returns.shape[-1] == 1:
        return returns[..., 0]
    return returns @ np.asarray(weights, dtype=np.float64)


def point_path(fc: Forecaster, history: np.ndarray, horizon: int) -> np.ndarray:
    """(H, k) returns: each prediction fed back as the next window's last row."""
    window = np.asarray(history[-fc.window :], dtype=np.float64)[None].copy()
    out = np.empty((horizon, window.shape[-1]))
    for h in range(horizon):
        nxt = fc.predict(window)[0]
        out[h] = nxt
        window = np.concatenate([window[:, 1:], nxt[None, None]], axis=1)
    return out


def model_paths(
    fc: Forecaster,
    history: np.ndarray,
    horizon: int,
    n_paths: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(N, H, k) returns: the recursion with a bootstrapped residual added at every step."""
    if len(fc.residuals) == 0:
        raise ValueError("the model kept no residuals to bootstrap")
    start = np.asarray(history[-fc.window :], dtype=np.float64)
    window = np.broadcast_to(start, (n_paths, *start.shape)).copy()
    out = np.empty((n_paths, horizon, start.shape[-1]))
    for h in range(horizon):
        draw = fc.residuals[rng.integers(0, len(fc.residuals), n_paths)]
        nxt = fc.predict(window) + draw
        out[:, h] = nxt
        window[:, :-1] = window[:, 1:]
        window[:, -1] = nxt
    return out


def iid_paths(
    history: np.ndarray, horizon: int, n_paths: int, rng: np.random.Generator
) -> np.ndarray:
    """(N, H, k) returns: rows of the history drawn with replacement."""
    history = np.asarray(history, dtype=np.float64)
    if history.ndim == 1:
        history = history[:, None]
    return history[rng.integers(0, len(history), (n_paths, horizon))]


def cumulative(returns: np.ndarray) -> np.ndarray:
    """Values V_0..V_H (last axis H + 1) of returns r_1..r_H (last axis H), V_0 = 1."""
    returns = np.asarray(returns, dtype=np.float64)
    growth = np.cumprod(1.0 + returns, axis=-1)
    ones = np.ones((*returns.shape[:-1], 1))
    return np.concatenate([ones, growth], axis=-1)


def bands(values: np.ndarray, percentiles: list[int] | tuple[int, ...]) -> np.ndarray:
    """(len(percentiles), H + 1): percentiles across paths of (N, H + 1) values."""
    return np.percentile(values, list(percentiles), axis=0)


def period_dates(last: pd.Timestamp, horizon: int, frequency: str) -> pd.DatetimeIndex:
    """The dates of periods 0..H after ``last`` (period ends: month ends or year ends)."""
    if frequency == "monthly":
        end = pd.Timestamp(last) + pd.offsets.MonthEnd(0)
        return pd.date_range(end, periods=horizon + 1, freq="ME")
    end = pd.Timestamp(last) + pd.offsets.YearEnd(0)
    return pd.date_range(end, periods=horizon + 1, freq="YE")

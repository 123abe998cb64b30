"""One forecast from one origin: fit on the periods up to it, then every path from it.

The forecast made at origin t reads rows 0..t of the series and nothing else: the model is
fitted on them (its validation windows are the last of them), and the paths start from their
last window. The rolling-origin evaluation and the final forecast are both this function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kerastrader.forecast.model import Forecaster, fit
from kerastrader.forecast.paths import cumulative, iid_paths, model_paths, point_path, portfolio
from kerastrader.forecast.spec import ForecastConfig


@dataclass
class OriginForecast:
    """Values V_0..V_H of the portfolio (V_0 = 1): the point path (H + 1,), the model's
    bootstrap paths and the naive bootstrap's (N, H + 1); returns alike without the V_0."""

    point: np.ndarray
    model: np.ndarray
    iid: np.ndarray
    point_returns: np.ndarray
    model_returns: np.ndarray
    iid_returns: np.ndarray
    forecaster: Forecaster


def forecast_from(
    series: np.ndarray,
    port: np.ndarray,
    weights: np.ndarray | None,
    origin: int,
    cfg: ForecastConfig,
    horizon: int,
    n_paths: int,
    seed: int,
) -> OriginForecast:
    """Fit on ``series[: origin + 1]`` (n, k) and forecast ``horizon`` periods; ``port`` is
    the portfolio's own return per row (what the naive bootstrap draws when k = 1)."""
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    history = series[: origin + 1]
    fc = fit(history, cfg)
    rng = np.random.default_rng(seed)
    point_r = portfolio(point_path(fc, history, horizon), weights)
    model_r = portfolio(model_paths(fc, history, horizon, n_paths, rng), weights)
    if series.shape[1] == 1:
        iid_r = iid_paths(np.asarray(port)[: origin + 1], horizon, n_paths, rng)[..., 0]
    else:
        iid_r = portfolio(iid_paths(history, horizon, n_paths, rng), weights)
    return OriginForecast(
        point=cumulative(point_r),
        model=cumulative(model_r),
        iid=cumulative(iid_r),
        point_returns=point_r,
        model_returns=model_r,
        iid_returns=iid_r,
        forecaster=fc,
    )

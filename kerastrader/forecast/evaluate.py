"""The forecaster backtested: rolling origins, and the error of each horizon.

From origins t = first - 1, first - 1 + step, ... the model is refitted on periods 0..t only
and forecasts up to ``rolling.horizon`` periods; each forecast is scored against the
cumulative return the book then earned over t+1..t+h, for every h the data still covers.
Four forecasts are scored side by side: the model's recursive point path, the median of its
residual-bootstrap paths, the median of the naive i.i.d. bootstrap (history up to t) and the
assumptions' fixed expected return compounded. Errors are forecast - actual, on cumulative
returns (V_h - 1); the coverage is the share of actuals inside the outer percentiles' band.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from kerastrader.forecast.origin import forecast_from
from kerastrader.forecast.spec import ForecastConfig, periods_per_year

log = logging.getLogger(__name__)

METHODS = ("point", "model_p50", "iid_p50", "assumption")


def origins(n: int, first: int, step: int) -> list[int]:
    """Origin rows: the last row of each fit's history; each has at least one later row."""
    return list(range(max(first, 1) - 1, n - 1, step))


def rolling_origin(
    returns: pd.DataFrame,
    series_columns: list[str],
    weights: np.ndarray | None,
    cfg: ForecastConfig,
) -> pd.DataFrame:
    """One row per (origin, horizon) with the actual and every forecast's cumulative return."""
    r = cfg["rolling"]
    horizon = int(r["horizon"])
    if horizon == 0:
        return pd.DataFrame()
    series = returns[series_columns].to_numpy(dtype=np.float64)
    port = returns["portfolio"].to_numpy(dtype=np.float64)
    pct = cfg["forecast"]["percentiles"]
    lo, hi = pct[0], pct[-1]
    growth = 1.0 + float(cfg["forecast"]["expected_return"])
    ppy = periods_per_year(cfg)
    rows = []
    todo = origins(len(returns), int(r["first"]), int(r["step"]))
    for i, o in enumerate(todo):
        log.info("rolling origin %d of %d: %s", i + 1, len(todo), returns.index[o].date())
        h_max = min(horizon, len(returns) - 1 - o)
        out = forecast_from(series, port, weights, o, cfg, h_max, int(r["paths"]),
                            seed=int(cfg["forecast"]["seed"]) + o)  # fmt: skip
        actual = np.cumprod(1.0 + port[o + 1 : o + 1 + h_max])
        m = np.percentile(out.model[:, 1:], [lo, 50, hi], axis=0)
        b = np.percentile(out.iid[:, 1:], [lo, 50, hi], axis=0)
        for h in range(1, h_max + 1):
            rows.append(
                {
                    "origin": returns.index[o],
                    "h": h,
                    "target": returns.index[o + h],
                    "actual": actual[h - 1] - 1.0,
                    "point": out.point[h] - 1.0,
                    "model_lo": m[0, h - 1] - 1.0,
                    "model_p50": m[1, h - 1] - 1.0,
                    "model_hi": m[2, h - 1] - 1.0,
                    "iid_lo": b[0, h - 1] - 1.0,
                    "iid_p50": b[1, h - 1] - 1.0,
                    "iid_hi": b[2, h - 1] - 1.0,
                    "assumption": growth ** (h / ppy) - 1.0,
                }
            )
    return pd.DataFrame(rows)


def horizon_errors(table: pd.DataFrame) -> pd.DataFrame:
    """Per horizon h: how many origins, each method's MAE, RMSE and bias, the bands' coverage."""
    if table.empty:
        return pd.DataFrame()
    out = []
    for h, g in table.groupby("h", sort=True):
        row: dict[str, float | int] = {"h": int(h), "origins": len(g)}
        for method in METHODS:
            err = g[method] - g["actual"]
            row[f"{method}_mae"] = float(err.abs().mean())
            row[f"{method}_rmse"] = float(np.sqrt((err**2).mean()))
            row[f"{method}_bias"] = float(err.mean())
        for band in ("model", "iid"):
            inside = (g["actual"] >= g[f"{band}_lo"]) & (g["actual"] <= g[f"{band}_hi"])
            row[f"{band}_coverage"] = float(inside.mean())
        out.append(row)
    return pd.DataFrame(out)

"""``kerastrader forecast CONFIG``: the book's periodic returns, the forecast, its backtest.

Writes into the output folder:

- ``config.toml``: the resolved forecast config;
- ``returns.csv``: the periodic returns learnt from (``portfolio`` and each asset);
- ``forecast.csv``: one row per period 0..H after the last one: the point path, each
  method's percentiles and mean of the cumulative value, the assumptions' line;
- ``paths.parquet``: every Monte Carlo path (method, path, h, date, return, value);
- ``rolling.csv`` / ``errors.csv``: the rolling-origin forecasts and the error of each
  horizon (:mod:`kerastrader.forecast.evaluate`);
- ``forecast.json``: provenance and every number the page shows;
- ``forecast.html``: the page with the fan chart (:mod:`kerastrader.forecast.page`).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from kerastrader.forecast.evaluate import horizon_errors, rolling_origin
from kerastrader.forecast.origin import forecast_from
from kerastrader.forecast.paths import period_dates
from kerastrader.forecast.periodic import BookReturns, book_returns
from kerastrader.forecast.spec import ForecastConfig, periods_per_year

log = logging.getLogger(__name__)

FILES = ("forecast.csv", "paths.parquet", "forecast.json", "forecast.html")


def pkey(p: float) -> str:
    """``5 -> "p05"``: the column and key name of a percentile."""
    return f"p{int(p):02d}"


def report_horizons(horizon: int, ppy: int) -> list[int]:
    """The horizons the page quotes: 1, 5, 10, 20 and 30 years that fit, and H itself."""
    out = [y * ppy for y in (1, 5, 10, 20, 30) if y * ppy <= horizon]
    return sorted(set(out + [horizon]))


def rolling_horizons(horizon: int, ppy: int) -> list[int]:
    """The rolling-origin horizons the page quotes: 1 period, 1, 3, 5 and 10 years."""
    out = [h for h in sorted({1, ppy, 3 * ppy, 5 * ppy, 10 * ppy}) if h <= horizon]
    return out


def _history_stats(port: pd.Series, ppy: int) -> dict[str, Any]:
    r = port.to_numpy(dtype=np.float64)
    value = float(np.prod(1.0 + r))
    geo = value ** (1.0 / len(r)) - 1.0
    return {
        "periods": len(r),
        "first": port.index[0].date().isoformat(),
        "last": port.index[-1].date().isoformat(),
        "mean": float(r.mean()),
        "geometric_mean": geo,
        "annual_return": (1.0 + geo) ** ppy - 1.0,
        "annual_volatility": float(r.std(ddof=1) * np.sqrt(ppy)),
        "cumulative": value - 1.0,
    }


def _series(book: BookReturns, cfg: ForecastConfig) -> tuple[list[str], np.ndarray | None]:
    if cfg["periods"]["series"] == "assets":
        return book.assets, np.array([book.weights[s] for s in book.assets])
    return ["portfolio"], None


def forecast_table(
    out_dates: pd.DatetimeIndex,
    point: np.ndarray,
    values: dict[str, np.ndarray],
    percentiles: list[int],
    growth: float,
    ppy: int,
) -> pd.DataFrame:
    """forecast.csv: per h, the point value, each method's percentiles and mean, the line."""
    h = np.arange(len(point))
    table = pd.DataFrame({"h": h, "date": out_dates.date, "point": point})
    table["point_return"] = np.concatenate([[np.nan], point[1:] / point[:-1] - 1.0])
    for method, v in values.items():
        pct = np.percentile(v, percentiles, axis=0)
        for p, row in zip(percentiles, pct, strict=True):
            table[f"{method}_{pkey(p)}"] = row
        table[f"{method}_mean"] = v.mean(axis=0)
    table["assumption"] = growth ** (h / ppy)
    return table


def paths_frame(values: dict[str, np.ndarray], dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Every path in long form: method, path, h (1..H), date, return, value."""
    parts = []
    for method, v in values.items():
        n, width = v.shape
        hs = np.tile(np.arange(1, width), n)
        ret = (v[:, 1:] / v[:, :-1] - 1.0).ravel()
        parts.append(
            pd.DataFrame(
                {
                    "method": method,
                    "path": np.repeat(np.arange(n), width - 1).astype(np.int32),
                    "h": hs.astype(np.int32),
                    "date": dates[hs],
                    "return": ret,
                    "value": v[:, 1:].ravel(),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["method"] = frame["method"].astype("category")
    return frame


def _at(table: pd.DataFrame, h: int, percentiles: list[int], ppy: int) -> dict[str, Any]:
    row = table.iloc[h]
    return {
        "h": int(h),
        "years": h / ppy,
        "date": str(row["date"]),
        "point": float(row["point"]),
        "assumption": float(row["assumption"]),
        **{
            m: {pkey(p): float(row[f"{m}_{pkey(p)}"]) for p in percentiles}
            | {"mean": float(row[f"{m}_mean"])}
            for m in ("model", "iid")
        },
    }


def run_forecast(cfg: ForecastConfig, out_dir: str | Path) -> Path:
    """Run the configured forecast into ``out_dir``; returns the page's path."""
    from kerastrader.forecast.page import write_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(tomli_w.dumps(cfg))
    book = book_returns(cfg)
    frame = book.frame
    frame.to_csv(out / "returns.csv", float_format="%.10g")
    ppy = periods_per_year(cfg)
    columns, weights = _series(book, cfg)
    f = cfg["forecast"]
    horizon, pct = int(f["horizon"]), list(f["percentiles"])
    growth = 1.0 + float(f["expected_return"])
    series = frame[columns].to_numpy(dtype=np.float64)
    port = frame["portfolio"].to_numpy(dtype=np.float64)
    log.info("forecast: %d %s periods, %s .. %s", len(frame), cfg["periods"]["frequency"],
             book.info["first"], book.info["last"])  # fmt: skip
    res = forecast_from(series, port, weights, len(frame) - 1, cfg, horizon, int(f["paths"]),
                        seed=int(f["seed"]))  # fmt: skip
    dates = period_dates(frame.index[-1], horizon, cfg["periods"]["frequency"])
    values = {"model": res.model, "iid": res.iid}
    table = forecast_table(dates, res.point, values, pct, growth, ppy)
    table.to_csv(out / "forecast.csv", index=False, float_format="%.10g")
    paths_frame(values, dates).to_parquet(out / "paths.parquet", index=False)

    rolling = rolling_origin(frame, columns, weights, cfg)
    errors = horizon_errors(rolling)
    rolling.to_csv(out / "rolling.csv", index=False, float_format="%.10g")
    errors.to_csv(out / "errors.csv", index=False, float_format="%.10g")

    years = horizon / ppy
    summary: dict[str, Any] = {
        "title": cfg["report"]["title"] or "Portfolio forecast",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "book": book.info,
        "history": _history_stats(frame["portfolio"], ppy),
        "model": res.forecaster.info,
        "forecast": {
            "origin": frame.index[-1].date().isoformat(),
            "horizon": horizon,
            "horizon_years": years,
            "paths": int(f["paths"]),
            "percentiles": pct,
            "method": "residual bootstrap: the recursion with a residual of the model drawn "
            f"with replacement added at every step (residuals of its {res.forecaster.info['residuals_from']} windows)",  # noqa: E501
            "point_annual_return": float(res.point[-1] ** (1.0 / years) - 1.0),
            "point_last_return": float(res.point_returns[-1]),
            "point_first_return": float(res.point_returns[0]),
            "model_median_annual": float(np.median(res.model[:, -1]) ** (1.0 / years) - 1.0),
            "iid_median_annual": float(np.median(res.iid[:, -1]) ** (1.0 / years) - 1.0),
            "at": {f"h{h}": _at(table, h, pct, ppy) for h in report_horizons(horizon, ppy)},
            # the same rows keyed by years (y1, y5, ...) and the last one (end), so monthly
            # and yearly forecasts compare on one page
            "years": {
                f"y{h // ppy}": _at(table, h, pct, ppy)
                for h in report_horizons(horizon, ppy)
                if h % ppy == 0
            },
            "end": _at(table, horizon, pct, ppy),
        },
        "assumption": {
            "annual_return": float(f["expected_return"]),
            "value_at_horizon": float(growth**years),
        },
        "rolling": _rolling_summary(rolling, errors, cfg, ppy),
        "files": {
            "returns": "returns.csv",
            "forecast": "forecast.csv",
            "paths": "paths.parquet",
            "rolling": "rolling.csv",
            "errors": "errors.csv",
        },
    }
    (out / "forecast.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    page = write_page(out)
    log.info("forecast page: %s", page)
    return page


def _rolling_summary(
    rolling: pd.DataFrame, errors: pd.DataFrame, cfg: ForecastConfig, ppy: int
) -> dict[str, Any]:
    r = cfg["rolling"]
    if rolling.empty:
        return {"origins": 0, "horizon": int(r["horizon"])}
    by_h = errors.set_index("h")
    hs = [h for h in rolling_horizons(int(r["horizon"]), ppy) if h in by_h.index]

    def row(h: int) -> dict[str, Any]:
        values = by_h.loc[h].to_dict()
        return {k: int(v) if k == "origins" else float(v) for k, v in values.items()} | {
            "h": int(h)
        }

    years = {f"y{h // ppy}": row(h) for h in hs if h % ppy == 0}
    return {
        "origins": int(rolling["origin"].nunique()),
        "first_origin": pd.Timestamp(rolling["origin"].min()).date().isoformat(),
        "last_origin": pd.Timestamp(rolling["origin"].max()).date().isoformat(),
        "horizon": int(r["horizon"]),
        "step": int(r["step"]),
        "paths": int(r["paths"]),
        "band": [cfg["forecast"]["percentiles"][0], cfg["forecast"]["percentiles"][-1]],
        "horizons": {f"h{h}": row(h) for h in hs},
        "years": years,  # the rows of whole years, keyed y1, y3, ...
        "last": row(int(by_h.index.max())),  # the longest horizon scored
    }

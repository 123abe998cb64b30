"""Periodic (monthly or yearly) returns of a book: what the forecaster learns from.

The portfolio's returns are the benchmark's (:mod:`kerastrader.runs.benchmark`): the book's
target weights, rebalanced on its own schedule at the open after each decision bar, total
return by default, without costs; the daily returns are compounded into calendar periods.
Each asset's periodic return is its investable close (dividends reinvested) from one period's
last bar to the next. A period counts only when complete: the one holding the first decision
(the money goes in at the next open) and a last one the data stops inside are dropped.

``book.source = "assumptions"`` draws yearly returns instead, asset by asset from one
``RandomState(seed)``: uniform in each asset's range as the article does (which carries
almost none of the volatility it states), or normal around the range's middle with the stated
volatility. The portfolio's yearly return is the weighted sum (rebalanced every year).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.errors import ConfigError, DataError
from kerastrader.forecast.spec import ForecastConfig

log = logging.getLogger(__name__)

PERIOD_CODE = {"monthly": "M", "yearly": "Y"}


@dataclass
class BookReturns:
    """``frame``: one row per complete period (dated by its last bar), column ``portfolio``
    and one column per asset; ``weights``: asset -> target weight; ``info``: provenance."""

    frame: pd.DataFrame
    weights: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def assets(self) -> list[str]:
        return list(self.weights)


def compound(daily: pd.Series, frequency: str) -> pd.Series:
    """Daily simple returns compounded into calendar periods, dated by each period's last
    bar; the first period (entry) and an unfinished last one dropped."""
    daily = daily.copy()
    index = pd.DatetimeIndex(daily.index)
    if index.tz is not None:
        index = index.tz_localize(None)
    daily.index = index
    code = PERIOD_CODE[frequency]
    keys = index.to_period(code)
    grouped = (1.0 + daily).groupby(keys)
    out = grouped.prod() - 1.0
    last_bar = pd.Series(index, index=index).groupby(keys).max()
    out.index = pd.DatetimeIndex(last_bar.to_numpy(), name="date")
    out = out.iloc[1:]  # the entry period: money goes in at the open after the first decision
    if len(out) and _unfinished(index[-1], frequency):
        out = out.iloc[:-1]
    return out


def _unfinished(last: pd.Timestamp, frequency: str) -> bool:
    """The data stops inside its last period: the next business day is still in it."""
    nxt = last + pd.offsets.BDay(1)
    if frequency == "monthly":
        return (nxt.year, nxt.month) == (last.year, last.month)
    return nxt.year == last.year


def from_config(cfg: ForecastConfig) -> BookReturns:
    """The book of ``book.config``: its bars, its benchmark weights and schedule."""
    from kerastrader.backtest import load_universe
    from kerastrader.config import load_config
    from kerastrader.runs.benchmark import benchmark_returns, benchmark_spec, investable_prices

    book_cfg = load_config(cfg["book"]["config"], list(cfg["book"]["set"]))
    universe, data_info = load_universe(book_cfg)
    spec = benchmark_spec(book_cfg, list(universe))
    weights = {s: w for s, w in spec.weights.items() if w}
    if not weights:
        raise ConfigError(f"{cfg['book']['config']}: the book holds nothing (all weights 0)")
    held = {s: universe[s] for s in weights}
    decision = max(b.index[0] for b in held.values())  # every asset trades from here on
    end = min(b.index[-1] for b in held.values())
    daily = benchmark_returns(held, spec, decision, end)
    frequency = cfg["periods"]["frequency"]
    frame = pd.DataFrame({"portfolio": compound(daily, frequency)})
    for sym, bars in held.items():
        close = investable_prices(bars, spec.returns)["close"]
        close = close[(close.index >= decision) & (close.index <= end)]
        frame[sym] = compound(close.pct_change().fillna(0.0), frequency).reindex(frame.index)
    frame = _cut(frame, cfg)
    info = {
        "source": "config",
        "config": cfg["book"]["config"],
        "path": data_info["path"],
        "symbols": list(weights),
        "weights": weights,
        "rebalance": spec.rebalance,
        "returns": spec.returns,
        "costs": "none (the book's own returns, before trading costs)",
        "describe": spec.describe(None).replace(", without costs", ""),
        "first_bar": decision.date().isoformat(),
        "last_bar": end.date().isoformat(),
    }
    return BookReturns(frame, weights, _with_span(info, frame, frequency))


def simulated(cfg: ForecastConfig) -> BookReturns:
    """Yearly returns drawn from the assumptions (see the module docstring)."""
    a = cfg["assumptions"]
    n = int(a["periods"])
    rng = np.random.RandomState(int(a["seed"]))  # the article's np.random.seed(...) stream
    columns: dict[str, np.ndarray] = {}
    for name, lo, hi, vol in zip(a["names"], a["low"], a["high"], a["volatility"], strict=True):
        if a["draw"] == "uniform":
            columns[name] = rng.uniform(lo, hi, n)
        else:
            columns[name] = rng.normal((lo + hi) / 2.0, vol, n)
    end = pd.Timestamp(a["end"])
    dates = pd.DatetimeIndex([end - pd.DateOffset(years=n - 1 - i) for i in range(n)], name="date")
    weights = {name: float(w) for name, w in zip(a["names"], a["weights"], strict=True)}
    assets = pd.DataFrame(columns, index=dates)
    frame = pd.DataFrame({"portfolio": assets.to_numpy() @ np.array(list(weights.values()))},
                         index=dates)  # fmt: skip
    frame = frame.join(assets)
    frame = _cut(frame, cfg)
    ranges = zip(a["weights"], a["low"], a["high"], strict=True)
    mid = sum(w * (lo + hi) / 2 for w, lo, hi in ranges)
    info = {
        "source": "assumptions",
        "draw": a["draw"],
        "seed": int(a["seed"]),
        "symbols": list(weights),
        "weights": weights,
        "rebalance": "yearly",
        "returns": "simulated",
        "describe": (
            f"{n} years drawn "
            + (
                "uniformly in each asset's range"
                if a["draw"] == "uniform"
                else "from normals at each range's middle with the stated volatility"
            )
            + f" (seed {int(a['seed'])}); yearly weighted sum"
        ),  # fmt: skip
        "expected_return_of_assumptions": float(mid),
    }
    return BookReturns(frame, weights, _with_span(info, frame, "yearly"))


def _cut(frame: pd.DataFrame, cfg: ForecastConfig) -> pd.DataFrame:
    b = cfg["book"]
    if b["start"]:
        frame = frame[frame.index >= pd.Timestamp(b["start"])]
    if b["end"]:
        frame = frame[frame.index <= pd.Timestamp(b["end"])]
    if frame[["portfolio"]].isna().any().any():
        raise DataError("book", "a period without a portfolio return")
    return frame


def _with_span(info: dict[str, Any], frame: pd.DataFrame, frequency: str) -> dict[str, Any]:
    if len(frame) < 2:
        raise DataError(str(info.get("config") or "book"), f"only {len(frame)} complete periods")
    info.update(
        frequency=frequency,
        periods=len(frame),
        first=frame.index[0].date().isoformat(),
        last=frame.index[-1].date().isoformat(),
    )
    return info


def book_returns(cfg: ForecastConfig) -> BookReturns:
    """The periodic returns the forecast config names."""
    if cfg["book"]["source"] == "assumptions":
        return simulated(cfg)
    return from_config(cfg)

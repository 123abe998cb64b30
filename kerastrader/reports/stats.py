"""pyfolio's performance statistics, as plain JSON-safe numbers with snake_case names."""

from __future__ import annotations

import math
import re
import warnings
from types import ModuleType
from typing import Any

import pandas as pd

#: perf_stats keys every strategy entry of metrics.json carries (alpha and beta on top).
STAT_KEYS = (
    "annual_return",
    "cumulative_returns",
    "annual_volatility",
    "sharpe_ratio",
    "calmar_ratio",
    "stability",
    "max_drawdown",
    "omega_ratio",
    "sortino_ratio",
    "skew",
    "kurtosis",
    "tail_ratio",
    "daily_value_at_risk",
)


def snake(name: str) -> str:
    """'Daily value at risk' -> 'daily_value_at_risk': keys that JSON readers can use as names."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def json_number(x: object) -> float | int | None:
    """NaN and infinities have no JSON form: they become null."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def import_pyfolio() -> ModuleType:
    """pyfolio, without its import-time warning that zipline (which we do not use) is absent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message='Module "zipline.assets" not found')
        import pyfolio
        import pyfolio.pos  # noqa: F401  (the module that warns)
    return pyfolio


def perf_stats(returns: pd.Series, **kwargs: Any) -> dict[str, float | None]:
    """pyfolio's statistics of ``returns`` as a snake_case dict (None where undefined)."""
    # A flat or very short series makes empyrical divide by zero (RuntimeWarning) and pandas
    # warn about empty slices; the NaN results become None, so the warnings say nothing new.
    timeseries = import_pyfolio().timeseries

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = timeseries.perf_stats(returns, **kwargs)
    return {snake(str(k)): json_number(v) for k, v in stats.items()}


def strategy_stats(
    returns: pd.Series,
    benchmark: pd.Series,
    positions: pd.DataFrame | None = None,
    transactions: pd.DataFrame | None = None,
) -> dict[str, float | None]:
    """Statistics of the strategy, with alpha and beta against the benchmark.

    Positions and transactions add gross leverage and turnover; without fills pyfolio's
    turnover has nothing to divide, so transactions are then left out.
    """
    kwargs: dict[str, Any] = {"factor_returns": benchmark.reindex(returns.index).fillna(0.0)}
    if positions is not None and len(positions):
        kwargs["positions"] = positions
        if transactions is not None and len(transactions):
            kwargs["transactions"] = transactions
    return perf_stats(returns, **kwargs)


def benchmark_stats(benchmark: pd.Series) -> dict[str, float | None]:
    """The same statistics for buy and hold: no positions, so no leverage or turnover."""
    return perf_stats(benchmark)

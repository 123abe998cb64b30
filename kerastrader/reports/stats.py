"""pyfolio's performance statistics, as plain JSON-safe numbers with snake_case names."""

from __future__ import annotations

import math
import re
import warnings

import pandas as pd


def snake(name: str) -> str:
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


def import_pyfolio():
    """pyfolio, without its import-time warning that zipline (which we do not use) is absent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message='Module "zipline.assets" not found')
        import pyfolio
        import pyfolio.pos  # noqa: F401  (the module that warns)
    return pyfolio


def _perf_stats(returns: pd.Series, **kwargs) -> dict[str, float | None]:
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
    kwargs: dict = {"factor_returns": benchmark.reindex(returns.index).fillna(0.0)}
    if positions is not None and len(positions):
        kwargs["positions"] = positions
        if transactions is not None and len(transactions):
            kwargs["transactions"] = transactions
    return _perf_stats(returns, **kwargs)


def benchmark_stats(benchmark: pd.Series) -> dict[str, float | None]:
    return _perf_stats(benchmark)

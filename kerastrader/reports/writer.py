"""Run files in, report out: the one entry point that writes a run's results."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.reports.analyzer import TXN_COLUMNS
from kerastrader.reports.stats import benchmark_stats, json_number, strategy_stats

log = logging.getLogger(__name__)
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, text: str) -> None:
    """Write beside the target and rename: a failure never leaves half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _date_strings(index: pd.DatetimeIndex) -> list[str]:
    daily = (index == index.normalize()).all()
    return list(index.strftime("%Y-%m-%d" if daily else "%Y-%m-%dT%H:%M:%S%z"))


def _frame_csv(frame: pd.DataFrame) -> str:
    out = frame.copy()
    out.index = pd.Index(_date_strings(pd.DatetimeIndex(frame.index)), name="date")
    return out.to_csv(float_format="%.10g")


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if isinstance(obj, int | np.integer):
        return int(obj)
    return json_number(obj)


def _check_inputs(
    returns: pd.Series,
    benchmark: pd.Series,
    positions: pd.DataFrame,
    transactions: pd.DataFrame,
    y_true: np.ndarray | None,
    y_prob: np.ndarray | None,
    diagnostic_dates: pd.DatetimeIndex | None,
) -> None:
    """Programming errors, raised before anything is written (pyfolio needs UTC indexes)."""
    for name, obj in (
        ("returns", returns),
        ("benchmark", benchmark),
        ("positions", positions),
        ("transactions", transactions),
    ):
        tz = getattr(obj.index, "tz", None)
        if tz is None or str(tz) != "UTC":
            raise ValueError(f"{name} needs a UTC DatetimeIndex (pyfolio's layout), got {tz}")
    missing = returns.index.difference(benchmark.index)
    if len(missing):  # the report would silently compare against zero returns
        raise ValueError(f"benchmark has no return on {len(missing)} strategy dates")
    missing_cols = [c for c in TXN_COLUMNS if c not in transactions.columns]
    if missing_cols:
        raise ValueError(f"transactions lack columns {missing_cols}")
    if (y_true is None) != (y_prob is None):
        raise ValueError("y_true and y_prob come together")
    if y_true is not None and np.size(y_true) != np.size(y_prob):
        raise ValueError(f"{np.size(y_true)} labels but {np.size(y_prob)} predictions")
    if diagnostic_dates is not None and y_true is not None:
        if len(diagnostic_dates) != np.size(y_true):
            raise ValueError(f"{len(diagnostic_dates)} dates for {np.size(y_true)} labels")


def write_run_files(
    out_dir: Path,
    *,
    returns: pd.Series,
    benchmark: pd.Series,
    positions: pd.DataFrame,
    transactions: pd.DataFrame,
    trades: int,
    start_value: float,
    model: dict | None,
    y_true: np.ndarray | None,
    y_prob: np.ndarray | None,
    config_toml: str,
    title: str,
    symbol: str,
    figures: bool = True,
    extra_run: dict | None = None,
    data: dict | None = None,
    diagnostic_dates: pd.DatetimeIndex | None = None,
    instruments: dict[str, pd.Series] | None = None,
) -> dict[str, Any]:
    """Write the run's files, then build report.html from them (as ``kerastrader report``).

    The page is built from the files just written, never from the arguments, so a later
    ``kerastrader report RUN_DIR`` rebuilds the same page. Inputs are checked before the first
    file is touched: a bad call leaves an existing run directory as it was. ``data`` (the
    bars' provenance) and ``diagnostic_dates`` (the dates of ``y_true``) are optional extras
    the backtest passes, as are ``instruments``: each instrument's own buy-and-hold daily
    returns over the same dates (with several instruments ``benchmark`` is their equal-weight
    mix), written to ``benchmarks.csv`` and summarised in ``metrics.json``.
    """
    from kerastrader.reports.report import render_report

    _check_inputs(returns, benchmark, positions, transactions, y_true, y_prob, diagnostic_dates)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A benchmark return that is NaN (the first bar of a file has no previous close) is 0.
    benchmark = benchmark.reindex(returns.index).fillna(0.0).rename("benchmark")
    final_value = float(start_value * np.prod(1.0 + returns.to_numpy()))
    metrics = {
        "strategy": strategy_stats(returns, benchmark, positions, transactions),
        "benchmark": benchmark_stats(benchmark),
        "model": model,
        "instruments": {
            sym: benchmark_stats(r.reindex(returns.index).fillna(0.0))
            for sym, r in (instruments or {}).items()
        },
        "run": {
            "start": _date_strings(returns.index[:1])[0] if len(returns) else None,
            "end": _date_strings(returns.index[-1:])[0] if len(returns) else None,
            "bars": int(len(returns)),
            "trades": int(trades),
            "fills": int(len(transactions)),
            "start_value": float(start_value),
            "final_value": final_value,
            "title": title,
            "symbol": symbol,
            **(extra_run or {}),
        },
        "data": data or {},
    }
    metrics = _clean(metrics)

    returns_csv = pd.DataFrame(
        {
            "date": _date_strings(returns.index),
            "strategy": returns.to_numpy(),
            "benchmark": benchmark.to_numpy(),
        }
    ).to_csv(index=False, float_format="%.12g")
    atomic_write(out_dir / "returns.csv", returns_csv)
    if instruments:
        each = pd.DataFrame(
            {sym: r.reindex(returns.index).fillna(0.0).to_numpy() for sym, r in instruments.items()}
        )
        each.insert(0, "date", _date_strings(returns.index))
        atomic_write(out_dir / "benchmarks.csv", each.to_csv(index=False, float_format="%.12g"))
    atomic_write(out_dir / "positions.csv", _frame_csv(positions))
    atomic_write(out_dir / "transactions.csv", _frame_csv(transactions))
    atomic_write(out_dir / "config.toml", config_toml)
    atomic_write(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    if y_true is not None and y_prob is not None:
        # The model figures are drawn from this file; without dates it still carries them.
        dates = (
            _date_strings(pd.DatetimeIndex(diagnostic_dates))
            if diagnostic_dates is not None
            else [""] * len(np.ravel(y_true))
        )
        diag = pd.DataFrame(
            {
                "date": dates,
                "label": np.asarray(y_true, dtype=int).ravel(),
                "prediction": np.asarray(y_prob, dtype=float).ravel(),
            }
        )
        atomic_write(out_dir / "diagnostics.csv", diag.to_csv(index=False, float_format="%.8f"))
    render_report(out_dir, figures=figures)
    return metrics

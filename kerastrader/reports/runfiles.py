"""A run's saved files, read back in pyfolio's layouts: the report's only input.

The report never re-runs anything: ``kerastrader report RUN_DIR`` and the backtest itself build
the page from these same files, so a rebuilt page shows exactly what the run wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.errors import KerastraderError

REQUIRED = ("metrics.json", "returns.csv", "positions.csv", "transactions.csv", "config.toml")


def _utc_index(values: pd.Series) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601"), name="date")
    return index


@dataclass
class RunFiles:
    run_dir: Path
    metrics: dict[str, Any]
    returns: pd.Series
    benchmark: pd.Series
    positions: pd.DataFrame
    transactions: pd.DataFrame
    config_toml: str
    diagnostics: pd.DataFrame | None  # date, label, prediction on the scored bars

    @property
    def values(self) -> pd.Series:
        """Portfolio value at each bar's close, from the start value and the returns."""
        start = float(self.metrics["run"]["start_value"])
        return start * (1.0 + self.returns).cumprod()


def read_run(run_dir: str | Path) -> RunFiles:
    """Read a run directory written by a backtest; a missing file is a clear error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KerastraderError(f"{run_dir}: not a run directory")
    missing = [f for f in REQUIRED if not (run_dir / f).is_file()]
    if missing:
        raise KerastraderError(f"{run_dir}: not a complete run (missing {', '.join(missing)})")
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except json.JSONDecodeError as exc:
        raise KerastraderError(f"{run_dir / 'metrics.json'}: not valid JSON ({exc})") from None

    ret = pd.read_csv(run_dir / "returns.csv")
    index = _utc_index(ret["date"])
    returns = pd.Series(ret["strategy"].to_numpy(float), index=index, name="strategy")
    benchmark = pd.Series(ret["benchmark"].to_numpy(float), index=index, name="benchmark")

    pos = pd.read_csv(run_dir / "positions.csv")
    positions = pos.drop(columns="date").astype(float)
    positions.index = _utc_index(pos["date"])

    txn = pd.read_csv(run_dir / "transactions.csv", dtype={"symbol": str})
    transactions = txn.drop(columns="date")
    transactions.index = _utc_index(txn["date"])
    for col in ("amount", "price", "commission"):
        transactions[col] = transactions[col].astype(float)

    diagnostics = None
    if (run_dir / "diagnostics.csv").is_file():
        diag = pd.read_csv(run_dir / "diagnostics.csv")
        if len(diag):
            diagnostics = diag
    return RunFiles(
        run_dir=run_dir,
        metrics=metrics,
        returns=returns,
        benchmark=benchmark,
        positions=positions,
        transactions=transactions,
        config_toml=(run_dir / "config.toml").read_text(),
        diagnostics=diagnostics,
    )


def round_trips(transactions: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    """pyfolio's round trips (FIFO, PnL before commissions); empty when nothing closed."""
    from kerastrader.reports.stats import import_pyfolio

    if transactions.empty:
        return pd.DataFrame()
    pf = import_pyfolio()
    try:
        trips = pf.round_trips.extract_round_trips(
            transactions[["amount", "price", "symbol"]], portfolio_value=values
        )
    except (KeyError, ValueError, IndexError):
        return pd.DataFrame()
    if not len(trips) or "pnl" not in trips:
        return pd.DataFrame()
    return trips


def open_position_pnl(transactions: pd.DataFrame, positions: pd.DataFrame) -> float:
    """Unrealised PnL of what is still open at the end: FIFO lots valued at the last close."""
    total = 0.0
    if transactions.empty:
        return total
    for symbol, txns in transactions.groupby("symbol"):
        lots: list[list[float]] = []  # [signed amount, price], oldest first
        for amount, price in zip(txns["amount"], txns["price"], strict=True):
            remaining = amount
            while remaining and lots and np.sign(lots[0][0]) != np.sign(remaining):
                take = min(abs(remaining), abs(lots[0][0])) * np.sign(lots[0][0])
                lots[0][0] -= take
                remaining += take
                if lots[0][0] == 0:
                    lots.pop(0)
            if remaining:
                lots.append([remaining, price])
        size = sum(a for a, _ in lots)
        if size and symbol in positions.columns:
            last_price = positions[symbol].iloc[-1] / size
            total += sum(a * (last_price - p) for a, p in lots)
    return float(total)

"""The report's frames (returns, positions, transactions) from the journal's rows.

Why apart from :mod:`.journal`: the journal records events; turning them into daily values is
accounting, and the report reads the result only through the run files it is written to
(``returns.csv``, ``positions.csv``, ``transactions.csv``). So the columns here are the run
files' columns, written out in this module, not imported from the report: the run files are
the interface between a session and its report.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# transactions.csv (pyfolio's layout): signed amount, price, symbol, commission per fill.
TRANSACTION_COLUMNS = ["amount", "price", "symbol", "commission"]


def _no_transactions() -> pd.DataFrame:
    """No fills, still in the run file's layout (the report never special-cases columns)."""
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c == "symbol" else float) for c in TRANSACTION_COLUMNS},
        index=pd.DatetimeIndex([], name="date", tz="UTC"),
    )


def report_frames(
    bar_rows: list[dict[str, Any]],
    fill_rows: list[dict[str, Any]],
    orphans: list[tuple[str, float]],
    start_cash: float,
) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    """``(returns, positions, transactions)`` in the run files' layout.

    ``bar_rows``: ``symbol, time, close`` of every recorded bar in time order; ``fill_rows``:
    the journal's fills with their commissions (None until it arrived), ``shares`` already
    in cash units (times the contract multiplier); ``orphans``: ``(time, commission)`` of
    commission reports whose execution never arrived (IB charged them, so they count).

    The days are the UTC dates with a recorded bar or fill (for US sessions, the exchange
    date). Each symbol's shares at a day's end are valued at its last bar close of that day,
    carried forward from earlier days when it has none (and at its last fill price before
    its first bar). ``cash`` is the money after that day's fills and commissions. Returns
    are day over day, the first relative to ``start_cash``, so compounding them from
    ``start_cash`` gives the last day's value. Transactions keep their fill times.
    """
    bars = pd.DataFrame(bar_rows, columns=["symbol", "time", "close"])
    fills = pd.DataFrame(
        fill_rows, columns=["exec_id", "symbol", "time", "shares", "price", "commission"]
    )
    fills["commission"] = fills["commission"].astype(float).fillna(0.0)
    bars["time"] = pd.to_datetime(bars["time"], utc=True)
    fills["time"] = pd.to_datetime(fills["time"], utc=True)
    orphan = pd.Series(
        [float(c) for _, c in orphans],
        index=pd.to_datetime([t for t, _ in orphans], utc=True).normalize(),
        dtype=float,
    )
    if len(orphan):
        log.warning("%d commissions without their fill count as cash on arrival", len(orphan))
    days = pd.DatetimeIndex(
        sorted(
            set(bars["time"].dt.normalize()) | set(fills["time"].dt.normalize()) | set(orphan.index)
        ),
        name="date",
    )
    days = days.tz_convert("UTC") if days.tz is not None else days.tz_localize("UTC")
    symbols = sorted(set(bars["symbol"]) | set(fills["symbol"]))

    fill_day = fills["time"].dt.normalize()
    shares = (
        fills.assign(day=fill_day)
        .pivot_table(index="day", columns="symbol", values="shares", aggfunc="sum")
        .reindex(index=days, columns=symbols)
        .fillna(0.0)
        .cumsum()
    )
    closes = (  # bars and fills come in time order: "last" is the day's last
        bars.assign(day=bars["time"].dt.normalize())
        .pivot_table(index="day", columns="symbol", values="close", aggfunc="last")
        .reindex(index=days, columns=symbols)
        .ffill()
    )
    fill_prices = (
        fills.assign(day=fill_day)
        .pivot_table(index="day", columns="symbol", values="price", aggfunc="last")
        .reindex(index=days, columns=symbols)
        .ffill()
    )
    prices = closes.fillna(fill_prices).fillna(0.0)

    flows = (fills["shares"] * fills["price"] + fills["commission"]).groupby(fill_day).sum()
    outflow = flows.reindex(days, fill_value=0.0) + orphan.groupby(level=0).sum().reindex(
        days, fill_value=0.0
    )
    positions = (shares * prices).astype(float)
    positions["cash"] = float(start_cash) - outflow.cumsum().to_numpy()
    positions.columns.name = None
    positions.index = days

    values = positions.sum(axis=1).to_numpy(dtype=float)
    previous = np.concatenate(([float(start_cash)], values[:-1]))
    returns = pd.Series(values / previous - 1.0, index=days, name="strategy", dtype=float)

    if len(fills):
        transactions = pd.DataFrame(
            {
                "amount": fills["shares"].astype(float).to_numpy(),
                "price": fills["price"].astype(float).to_numpy(),
                "symbol": fills["symbol"].to_numpy(),
                "commission": fills["commission"].to_numpy(),
            },
            index=pd.DatetimeIndex(fills["time"], name="date"),
        )[TRANSACTION_COLUMNS]
    else:
        transactions = _no_transactions()
    return returns, positions, transactions

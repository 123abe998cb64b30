"""The benchmark: the investment the book is measured against, entered as the book can be.

A strategy's result means something only next to what its owner would otherwise hold. For a
book at strategic weights (40/45/5/10) that is those weights, rebalanced on the book's own
schedule, without the model's tilts; for the other allocations it is equal money in every
instrument, held; or one named instrument. It is priced the way the book is:

- it enters at the open of the bar after the strategy's first decision, the first fill the
  strategy could have had (not the close before the first traded day: that would hand the
  benchmark a day and an overnight gap the strategy cannot earn);
- it rebalances to its exact target weights at the open after each decision bar of the
  schedule (the strategy decides at a bar's close and fills at the next open);
- total return by default: prices with every dividend reinvested (Yahoo's Adj Close where the
  file has it, else the causal series of :mod:`kerastrader.feeds.actions`); ``data.returns =
  "price"`` uses the plain prices;
- with ``costs`` its trades pay the strategy's commission scheme and ``slippage_bps`` (no
  volume cap, no range slippage), stated in its description.

An instrument without a bar at a rebalance's open keeps its holding until it trades again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.errors import ConfigError
from kerastrader.feeds.actions import total_return_close
from kerastrader.strategies.allocation import SCHEDULES, is_rebalance_bar

KINDS = ("auto", "strategic", "equal")


@dataclass(frozen=True)
class BenchmarkSpec:
    """What the benchmark holds: target weights (fractions of value; the rest is cash), how
    often it returns to them (a schedule of :data:`SCHEDULES`, or ``"never"``: held), total
    or price returns, and whether its trades pay costs."""

    weights: dict[str, float]
    rebalance: str
    returns: str = "total"
    costs: bool = False

    def describe(self, broker: dict[str, Any] | None = None) -> str:
        """``40% SPY, 45% AGG, ... rebalanced monthly, total return, IB fixed costs``."""
        if len(self.weights) == 1:
            held = f"{next(iter(self.weights))} buy and hold"
        else:
            mix = ", ".join(f"{w:.0%} {s}" for s, w in self.weights.items())
            held = mix + (" held" if self.rebalance == "never" else f" rebalanced {_ly(self)}")
        ret = "total return" if self.returns == "total" else "price return"
        if self.costs and broker is not None:
            cost = f"{broker['commission_scheme']} commission and {broker['slippage_bps']:g} bps"
        else:
            cost = "without costs"
        return f"{held}, {ret}, {cost}; enters at the open after the first decision"


def _ly(spec: BenchmarkSpec) -> str:
    return {"bar": "every bar", "daily": "daily", "weekly": "weekly", "monthly": "monthly"}[
        spec.rebalance
    ]


def benchmark_spec(cfg: dict[str, Any], symbols: list[str]) -> BenchmarkSpec:
    """The configured benchmark (``[benchmark]``) for a book of ``symbols``."""
    b, pf = cfg["benchmark"], cfg["portfolio"]
    kind, rebalance = b["kind"], b["rebalance"]
    if kind not in KINDS and kind not in symbols:
        raise ConfigError(
            f"benchmark.kind = {kind!r}: expected {', '.join(KINDS)} or one of the symbols "
            f"({', '.join(symbols)})"
        )
    if rebalance not in ("auto", "never", *SCHEDULES):
        raise ConfigError(
            f"benchmark.rebalance = {rebalance!r}: expected auto, never or one of "
            f"{', '.join(SCHEDULES)}"
        )
    strategic = kind == "strategic" or (kind == "auto" and pf["allocation"] == "strategic")
    if kind in symbols:
        weights = {kind: 1.0}
    elif strategic:
        if not pf["weights"]:
            raise ConfigError("benchmark.kind = 'strategic' needs portfolio.weights")
        weights = {s: float(pf["weights"].get(s, 0.0)) for s in symbols}
    else:
        weights = {s: 1.0 / len(symbols) for s in symbols}
    if rebalance == "auto":
        rebalance = pf["rebalance"] if strategic and len(weights) > 1 else "never"
    return BenchmarkSpec(
        weights=weights,
        rebalance=rebalance,
        returns=cfg["data"].get("returns", "total"),
        costs=bool(b["costs"]),
    )


def investable_prices(bars: pd.DataFrame, returns: str) -> pd.DataFrame:
    """``open`` and ``close`` in which a holding's value grows as the investor's does: with
    dividends reinvested for total return (Yahoo's Adj Close where present), plain otherwise;
    ``raw_open`` is the traded price, for commissions."""
    close = bars["close"].to_numpy(dtype=float)
    if returns == "price":
        growth = close
    elif "adj_close" in bars and "dividends" not in bars:
        growth = bars["adj_close"].to_numpy(dtype=float)
    else:
        growth = total_return_close(bars)  # the features' and labels' series
    factor = growth / close
    return pd.DataFrame(
        {
            "open": bars["open"].to_numpy(dtype=float) * factor,
            "close": growth,
            "raw_open": bars["open"].to_numpy(dtype=float),
        },
        index=bars.index,
    )


def _default_days(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.normalize()


def benchmark_returns(
    universe: dict[str, pd.DataFrame],
    spec: BenchmarkSpec,
    decision: pd.Timestamp,
    end: pd.Timestamp,
    *,
    broker: dict[str, Any] | None = None,
    days: Callable[[pd.DatetimeIndex], pd.DatetimeIndex] | None = None,
) -> pd.Series:
    """Daily simple returns of the benchmark from the first decision bar ``decision`` to
    ``end`` (bar timestamps), indexed by UTC dates like the strategy's returns.

    The first day's return is 0 (the benchmark, like the strategy, has only decided); the
    money goes in at the next bar's open. ``days`` maps bar timestamps to trading days (the
    exchange clock's); by default the UTC date.
    """
    days = days or _default_days
    symbols = [s for s, w in spec.weights.items() if w]
    index = pd.DatetimeIndex(sorted(set().union(*(b.index for b in universe.values()))))
    index = index[(index >= decision) & (index <= end)]
    if len(index) == 0:
        raise ValueError("benchmark: no bars between the first decision and the end")
    prices = {s: investable_prices(universe[s], spec.returns).reindex(index) for s in symbols}
    opens = np.column_stack([prices[s]["open"].to_numpy() for s in symbols])
    raw_opens = np.column_stack([prices[s]["raw_open"].to_numpy() for s in symbols])
    closes = np.column_stack([prices[s]["close"].ffill().to_numpy() for s in symbols])
    weights = np.array([spec.weights[s] for s in symbols])
    trading_days = days(index)
    commission = _commission(broker) if spec.costs and broker is not None else None
    slippage = float(broker["slippage_bps"]) / 1e4 if spec.costs and broker is not None else 0.0

    holdings = np.zeros(len(symbols))  # units of the investable price
    start = float(broker["cash"]) if broker is not None else 1.0  # commissions are in money
    cash = start
    due = np.zeros(len(symbols), dtype=bool)  # instruments waiting for their rebalance fill
    last_decision: dt.date | None = None
    values = np.empty(len(index))
    for t in range(len(index)):
        has_open = np.isfinite(opens[t])
        if due.any() and t > 0:
            trade = due & has_open
            if trade.any():
                marks = np.where(has_open, opens[t], closes[t - 1])
                value_open = cash + float(np.nansum(holdings * marks))
                target = np.where(trade, value_open * weights / np.where(trade, opens[t], 1.0),
                                  holdings)  # fmt: skip
                delta = np.where(trade, target - holdings, 0.0)
                cash -= float(np.sum(delta[trade] * opens[t][trade]))
                if commission is not None:
                    traded = np.abs(delta[trade]) * opens[t][trade]
                    cash -= float(np.sum(traded)) * slippage
                    for value, raw in zip(traded, raw_opens[t][trade], strict=True):
                        cash -= commission.getcommission(value / raw, raw)  # shares, price
                holdings = np.where(trade, target, holdings)
                due &= ~trade
        day = trading_days[t].date()
        if spec.rebalance != "never" or last_decision is None:
            schedule = "bar" if spec.rebalance == "never" else spec.rebalance
            if is_rebalance_bar(last_decision, day, schedule):
                last_decision = day
                due[:] = True
        values[t] = cash + float(np.nansum(holdings * closes[t]))
    value = pd.Series(values, index=trading_days).groupby(level=0).last()
    previous = np.concatenate(([start], value.to_numpy()[:-1]))
    out = pd.Series(value.to_numpy() / previous - 1.0, index=value.index, name="benchmark")
    out.index = pd.DatetimeIndex(out.index, name="date").tz_localize("UTC")
    return out


def _commission(broker: dict[str, Any]):
    from kerastrader.brokers.costs import make_commission

    return make_commission(broker)

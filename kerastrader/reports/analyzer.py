"""Returns, positions and transactions in pyfolio's layouts, for any number of feeds.

Not ``bt.analyzers.PyFolio``: that keeps only the last feed's position column and its output
breaks pyfolio's full tear sheet when there are no trades. Every index here is UTC, as
pyfolio requires; daily bars are dated at 00:00 UTC whatever time of day the feed stamped
them with (a CSV feed stamps daily bars with its session end, 23:59:59.999989). Intraday bars
are grouped into the exchange's trading days (the ``clock``, an
:class:`~kerastrader.feeds.sessions.ExchangeClock`), each labelled 00:00 UTC of its date.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from kerastrader.feeds.sessions import ExchangeClock

log = logging.getLogger(__name__)

TXN_COLUMNS = ["amount", "price", "symbol", "commission"]


def _utc(index: list[dt.datetime] | pd.DatetimeIndex) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(index, name="date").tz_localize("UTC")


def _as_start(start: Any) -> dt.date | dt.datetime | None:
    """A date (daily bars) or a datetime (intraday: the first bar to record); ISO strings too."""
    if start is None:
        return None
    if isinstance(start, str):
        return dt.datetime.fromisoformat(start) if len(start) > 10 else dt.date.fromisoformat(start)
    if isinstance(start, dt.datetime):  # also pd.Timestamp; must come before date
        ts = pd.Timestamp(start)
        return ts.date() if ts == ts.normalize() else ts.to_pydatetime()
    if isinstance(start, dt.date):
        return start
    raise TypeError(f"start must be a date or datetime, got {type(start).__name__}")


def empty_transactions() -> pd.DataFrame:
    """No fills, still in pyfolio's layout: downstream code never special-cases the columns."""
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c == "symbol" else float) for c in TXN_COLUMNS},
        index=_utc([]),
    )


class PortfolioAnalyzer(bt.Analyzer):
    """Records the portfolio at every bar's close from ``start`` on (earlier bars are warm-up).

    The first return is relative to the value at the close of the last bar before ``start``
    (the starting cash when there is none), so compounding the returns from ``start_value``
    reproduces the broker's final value. Fills are recorded whenever they happen, also before
    ``start``: dropping one would make the transactions disagree with the money.
    """

    params = (
        ("start", None),
        ("clock", None),  # ExchangeClock: what a day of intraday bars is; None: the UTC date
    )

    def start(self) -> None:
        self._names = [self._name_of(d) for d in self.strategy.datas]
        self._daily = all(d._timeframe >= bt.TimeFrame.Days for d in self.strategy.datas)
        self._first = _as_start(self.p.start)
        if self._daily and isinstance(self._first, dt.datetime):
            self._first = self._first.date()  # daily bars: a time of day means its date
        self._dates: list[dt.datetime] = []
        self._values: list[float] = []
        self._rows: list[list[float]] = []
        self._fills: list[tuple[dt.datetime, float, float, str, float]] = []
        self._trades = 0
        broker = self.strategy.broker
        # A live broker may not know a starting cash; its value before the first bar is that.
        self._start_value = float(getattr(broker, "startingcash", None) or broker.getvalue())

    def _name_of(self, data: bt.AbstractDataBase) -> str:
        return data._name or f"data{self.strategy.datas.index(data)}"

    def notify_order(self, order: bt.Order) -> None:
        if order.status not in (order.Partial, order.Completed):
            return
        name = self._name_of(order.data)
        # The notified order is a clone whose pending bits are exactly the executions since
        # the previous notification of this order: one row per fill, partial fills included.
        for bit in order.executed.iterpending():
            if bit is None:
                break
            self._fills.append(
                (
                    order.data.num2date(bit.dt),  # in the feed's timezone, like the bars
                    float(bit.size),
                    float(bit.price),
                    name,
                    float(bit.closedcomm + bit.openedcomm),
                )
            )

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.isclosed:
            self._trades += 1

    def next(self) -> None:
        """Also runs in the strategy's prenext (Analyzer's default), so warm-up is ``start``'s."""
        broker = self.strategy.broker
        value = float(broker.getvalue())
        when = self.strategy.datetime.datetime(0)
        first = self._first
        if first is not None and (
            when < first if isinstance(first, dt.datetime) else when.date() < first
        ):
            self._start_value = value
            return
        row = []
        for data in self.strategy.datas:
            size = float(self.strategy.getposition(data).size)
            # A feed without a bar yet has a stale buffer: read its close only when held.
            row.append(size * float(data.close[0]) if size else 0.0)
        row.append(float(broker.getcash()))
        self._dates.append(when)
        self._values.append(value)
        self._rows.append(row)

    def _index(self, stamps: list[dt.datetime], daily: bool) -> pd.DatetimeIndex:
        index = pd.DatetimeIndex(stamps)
        return _utc(index.normalize() if daily else index)

    def get_analysis(self) -> dict[str, Any]:
        """Daily returns and end-of-day positions (pyfolio's unit); intraday fills keep times."""
        bars = pd.DatetimeIndex(self._dates)
        daily = self._daily and bars.normalize().is_unique
        if self._daily and not daily:
            log.warning("feeds say daily but several bars share a date: keeping the times")
        stamps, values_, rows = self._dates, self._values, self._rows
        if not self._daily:  # intraday bars: the portfolio at each trading day's last bar
            days = (self.p.clock or ExchangeClock()).trading_days(bars, daily=False)
            last = pd.Series(range(len(bars)), index=days).groupby(level=0).last()
            stamps = list(last.index.to_pydatetime())
            values_ = [self._values[i] for i in last]
            rows = [self._rows[i] for i in last]
        index = self._index(stamps, daily or not self._daily)
        values = pd.Series(values_, index=index, name="value", dtype=float)
        previous = np.concatenate(([self._start_value], values.to_numpy()[:-1]))
        returns = pd.Series(values.to_numpy() / previous - 1.0, index=index, name="strategy")
        positions = pd.DataFrame(rows, index=index, columns=[*self._names, "cash"])
        positions = positions.astype(float)
        if self._fills:
            when, amount, price, symbol, comm = zip(*self._fills, strict=True)
            transactions = pd.DataFrame(
                {"amount": amount, "price": price, "symbol": symbol, "commission": comm},
                index=self._index(list(when), daily),
            )
        else:
            transactions = empty_transactions()
        return {
            "returns": returns,
            "values": values,
            "positions": positions,
            "transactions": transactions,
            "trades": self._trades,
            "start_value": self._start_value,
        }

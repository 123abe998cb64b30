"""Returns, positions and transactions in pyfolio's layouts, for any number of feeds.

Not ``bt.analyzers.PyFolio``: that keeps only the last feed's position column and its output
breaks pyfolio's full tear sheet when there are no trades. Every index here is UTC, as
pyfolio requires.
"""

from __future__ import annotations

import datetime as dt

import backtrader as bt
import numpy as np
import pandas as pd

TXN_COLUMNS = ["amount", "price", "symbol", "commission"]


def _utc(index: list[dt.datetime]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(index, name="date").tz_localize("UTC")


class PortfolioAnalyzer(bt.Analyzer):
    """Records the portfolio at every bar's close from ``start`` on (earlier bars are warm-up).

    The first return is relative to the value at the close of the last bar before ``start``
    (the starting cash when there is none), so compounding the returns from ``start_value``
    reproduces the broker's final value.
    """

    params = (("start", None),)

    def start(self) -> None:
        self._names = [d._name or f"data{i}" for i, d in enumerate(self.strategy.datas)]
        self._dates: list[dt.datetime] = []
        self._values: list[float] = []
        self._rows: list[list[float]] = []
        self._fills: list[tuple[dt.datetime, float, float, str, float]] = []
        self._trades = 0
        self._start_value = float(self.strategy.broker.startingcash)

    def notify_order(self, order: bt.Order) -> None:
        if order.status not in (order.Partial, order.Completed):
            return
        name = order.data._name or f"data{self.strategy.datas.index(order.data)}"
        for bit in order.executed.iterpending():
            if bit is None:
                break
            self._fills.append(
                (
                    bt.num2date(bit.dt),
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
        broker = self.strategy.broker
        value = float(broker.getvalue())
        when = self.strategy.datetime.datetime(0)
        if self.p.start is not None and when.date() < self.p.start:
            self._start_value = value
            return
        row = [
            float(self.strategy.getposition(d).size) * float(d.close[0])
            for d in self.strategy.datas
        ]
        row.append(float(broker.getcash()))
        self._dates.append(when)
        self._values.append(value)
        self._rows.append(row)

    def get_analysis(self) -> dict:
        index = _utc(self._dates)
        values = pd.Series(self._values, index=index, name="value", dtype=float)
        previous = np.concatenate(([self._start_value], values.to_numpy()[:-1]))
        returns = pd.Series(values.to_numpy() / previous - 1.0, index=index, name="strategy")
        positions = pd.DataFrame(self._rows, index=index, columns=[*self._names, "cash"])
        if self._fills:
            when, amount, price, symbol, comm = zip(*self._fills, strict=True)
            transactions = pd.DataFrame(
                {"amount": amount, "price": price, "symbol": symbol, "commission": comm},
                index=_utc(list(when)),
            )
        else:
            transactions = pd.DataFrame(
                {c: pd.Series(dtype=object if c == "symbol" else float) for c in TXN_COLUMNS},
                index=_utc([]),
            )
        return {
            "returns": returns,
            "values": values,
            "positions": positions,
            "transactions": transactions,
            "trades": self._trades,
            "start_value": self._start_value,
        }

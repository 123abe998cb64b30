"""A Backtrader session through the IB store, broker and feed against the IB-like gateway.

A strategy on 30-minute bars (built by ``IBData`` from IB's 5-second bars) calls ``send`` on
its third live bar and ``later`` two bars on; both get the strategy, whose ``gateway``
attribute is the simulated gateway (for scripted events). (Bars: ``tests/iblike.py``.)
"""

from __future__ import annotations

from typing import Any

import backtrader as bt

from kerastrader.brokers.ib.broker import IBBroker
from kerastrader.brokers.ib.feed import IBData
from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from kerastrader.brokers.ib.store import IBStore
from kerastrader.brokers.journal import Journal
from kerastrader.brokers.safety import Limits
from tests.iblike import HISTORY, make_bars

LIVE_DAYS = 2


class Orders(bt.Strategy):
    """Calls ``send(strategy)`` on the third live bar, then ``later(strategy)`` two bars on."""

    params = (("send", None), ("later", None), ("gateway", None))

    def __init__(self):
        self.gateway: SimulatedGateway = self.p.gateway
        self.notes: list[tuple[int, str]] = []
        self.orders: list[bt.Order] = []
        self.live = 0

    def notify_order(self, order):
        self.notes.append((order.ref, order.getstatusname()))

    def next(self):
        if self.data.datetime.date(0) < make_bars().index[HISTORY].date():
            return  # warm-up bars from history
        self.live += 1
        if self.live == 3 and self.p.send is not None:
            out = self.p.send(self)
            self.orders = out if isinstance(out, list) else [out]
        elif self.live == 5 and self.p.later is not None:
            self.p.later(self)


def run(
    tmp_path,
    send=None,
    later=None,
    ib: IBLike | None = None,
    faults=None,
    limits=None,
    idle_exit: float = 0.0,
    **store_kwargs: Any,
):
    """One session over the first LIVE_DAYS replayed sessions, on 30-minute bars.

    Returns (strategy, gateway, journal, store)."""
    frame = make_bars(HISTORY + LIVE_DAYS)
    ib = ib or IBLike(lockstep_seconds=1800)
    gateway = SimulatedGateway({"AAA": frame}, history=HISTORY, ib=ib, faults=faults)
    host, port = gateway.start()
    store = IBStore(host, port, client_id=1, lockstep=True, **store_kwargs)
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        store.start()
        cerebro = bt.Cerebro(stdstats=False)
        data = IBData(store=store, contract=store.mod.Stock("AAA", "SMART", "USD"), warmup=60,
                      bar_seconds=5, end=gateway.finished, journal=journal,
                      timeframe=bt.TimeFrame.Minutes, compression=30, name="AAA",
                      idle_exit=idle_exit)  # fmt: skip
        cerebro.adddata(data, name="AAA")
        cerebro.setbroker(IBBroker(store=store, journal=journal, datas=[data],
                                   limits=limits or Limits()))  # fmt: skip
        cerebro.addstrategy(Orders, send=send, later=later, gateway=gateway)
        strategy = cerebro.run()[0]
        return strategy, gateway, journal, store
    finally:
        store.stop()
        gateway.stop()

"""Backtrader sessions through the IB store, broker and feed against the IB-like gateway.

``live_session`` is the one assembly every live test shares: an ``IBStore`` in lockstep with
client id 1, a ``Journal``, and a Cerebro with one ``IBData`` feed (the stock AAA on SMART
unless told otherwise, 30-minute bars built from IB's 5-second bars, or daily ones), an
``IBBroker`` and the test's strategy. It runs the session and yields while the store is still
connected (for reports that arrive after the replay's end, or a snapshot); the store stops on
leaving. ``live_run`` is the same for a test that needs nothing while connected.

``run`` is one such session over the first LIVE_DAYS replayed sessions with the ``Orders``
strategy: it calls ``send`` on its third live bar and ``later`` two bars on; both get the
strategy, whose ``gateway`` attribute is the simulated gateway (for scripted events).
(Bars: ``tests/iblike.py``.)
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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


@dataclass
class Live:
    """What a live session leaves to check: its strategy, broker, journal and store."""

    strategy: bt.Strategy
    broker: IBBroker
    journal: Journal
    store: IBStore


def stock(mod: Any) -> Any:
    """The tests' instrument: the stock AAA on SMART in USD."""
    return mod.Stock("AAA", "SMART", "USD")


@contextmanager
def live_session(
    gateway: SimulatedGateway | tuple[str, int],
    journal_path: str | Path,
    strategy: type[bt.Strategy] = bt.Strategy,
    *,
    contract: Callable[[Any], Any] = stock,
    name: str = "AAA",
    daily: bool = False,
    warmup: int | None = None,
    events: queue.Queue | None = None,
    store_kwargs: dict[str, Any] | None = None,
    feed_kwargs: dict[str, Any] | None = None,
    broker_kwargs: dict[str, Any] | None = None,
    strategy_kwargs: dict[str, Any] | None = None,
) -> Iterator[Live]:
    """Run ``strategy`` live against ``gateway`` to the end of its replay; yield, connected.

    ``gateway`` may be a bare (host, port) for a session in another process than its gateway:
    the feed then has no end and runs until the process stops. ``contract(mod)`` builds the
    contract from ib_async's module. Bars are 30 minutes (warm-up 20) or, with ``daily``, one
    per session (warm-up 5). ``events`` replaces the store's event queue (to watch what
    arrives in which order). Anything raised while assembling or running propagates, after the
    store has stopped."""
    if isinstance(gateway, SimulatedGateway):
        (host, port), end = gateway.address, gateway.finished
    else:
        (host, port), end = gateway, None
    store = IBStore(host, port, client_id=1, lockstep=True, **(store_kwargs or {}))
    if events is not None:
        store.events = events
    journal = Journal(journal_path)
    bars = (
        {"timeframe": bt.TimeFrame.Days, "compression": 1}
        if daily
        else {"timeframe": bt.TimeFrame.Minutes, "compression": 30}
    )
    try:
        store.start()
        cerebro = bt.Cerebro(stdstats=False)
        data = IBData(store=store, contract=contract(store.mod), bar_seconds=5, end=end,
                      warmup=warmup if warmup is not None else (5 if daily else 20),
                      journal=journal, name=name, **bars, **(feed_kwargs or {}))  # fmt: skip
        cerebro.adddata(data, name=name)
        broker = IBBroker(store=store, journal=journal, datas=[data], **(broker_kwargs or {}))
        cerebro.setbroker(broker)
        cerebro.addstrategy(strategy, **(strategy_kwargs or {}))
        yield Live(cerebro.run()[0], broker, journal, store)
    finally:
        store.stop()


def live_run(*args: Any, **kwargs: Any) -> Live:
    """``live_session`` for a test that needs nothing while the store is connected."""
    with live_session(*args, **kwargs) as live:
        return live


def settle(live: Live, done: Callable[[], bool], seconds: float = 5.0) -> None:
    """The last reports may still be on their way when the replay ends: keep applying what
    arrives (``broker.next()``) until ``done()`` or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():
        time.sleep(0.05)
        live.broker.next()


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
    gateway.start()
    try:
        live = live_run(
            gateway,
            tmp_path / "journal.sqlite",
            Orders,
            warmup=60,
            store_kwargs=store_kwargs,
            feed_kwargs={"idle_exit": idle_exit},
            broker_kwargs={"limits": limits or Limits()},
            strategy_kwargs={"send": send, "later": later, "gateway": gateway},
        )
        return live.strategy, gateway, live.journal, live.store
    finally:
        gateway.stop()

"""IBBroker order types against the simulated gateway: what Backtrader's strategy sends is what
the gateway works, and what the gateway fills comes back as Backtrader executions."""

from __future__ import annotations

import backtrader as bt
import pytest

from kerastrader.brokers.ib.broker import IBBroker
from kerastrader.brokers.ib.feed import IBData
from kerastrader.brokers.ib.simulator import Faults, SimulatedGateway
from kerastrader.brokers.ib.store import IBStore
from kerastrader.brokers.journal import Journal
from kerastrader.brokers.safety import Limits
from tests.conftest import random_walk_bars

HISTORY = 30


class OneOrder(bt.Strategy):
    """Sends ``send(strategy)`` on the first live bar and records every notification."""

    params = (("send", None), ("at", HISTORY))

    def __init__(self):
        self.notes = []
        self.orders = []
        self.sent = False

    def notify_order(self, order):
        self.notes.append((order.ref, order.getstatusname(), order.executed.size,
                           order.executed.price, order.executed.comm))  # fmt: skip

    def next(self):
        if not self.sent and len(self.data) > self.p.at:
            self.sent = True
            out = self.p.send(self)
            self.orders = out if isinstance(out, list) else [out]


def session(tmp_path, send, faults=None, limits=None, bars=None, strategy=OneOrder, pacer=None):
    bars = random_walk_bars(80, seed=7) if bars is None else bars
    gateway = SimulatedGateway({"GEN": bars}, history=HISTORY, faults=faults)
    host, port = gateway.start()
    store = IBStore(host, port, client_id=1, lockstep=True)
    if pacer is not None:
        store.pacer = pacer
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        store.start()
        cerebro = bt.Cerebro(stdstats=False)
        data = IBData(store=store, contract=store.mod.Stock("GEN", "SMART", "USD"),
                      warmup=HISTORY, bar_seconds=86_400, end=gateway.finished,
                      journal=journal, timeframe=bt.TimeFrame.Days, name="GEN")  # fmt: skip
        cerebro.adddata(data, name="GEN")
        cerebro.setbroker(IBBroker(store=store, journal=journal,
                                   datas=[data], limits=limits or Limits()))  # fmt: skip
        cerebro.addstrategy(strategy, send=send)
        strat = cerebro.run()[0]
        return strat, gateway, journal, bars
    finally:
        store.stop()
        gateway.stop()


def statuses(strat):
    return [n[1] for n in strat.notes]


def test_a_limit_order_fills_only_when_the_price_reaches_it(tmp_path):
    def send(s):
        return s.buy(size=10, exectype=bt.Order.Limit, price=s.data.close[0] * 0.97)

    strat, gateway, journal, bars = session(tmp_path, send)
    assert gateway.orders[0]["orderType"] == "LMT"
    # By hand from the bars: sent on bar HISTORY, worked from the next bar; the first bar whose
    # low reaches the limit fills it, at the open if it opened below, else at the limit.
    limit = 0.97 * bars["close"].iloc[HISTORY]
    j = next(j for j in range(HISTORY + 1, len(bars)) if bars["low"].iloc[j] <= limit)
    assert j > HISTORY + 1  # the scenario has a bar that does not reach the limit
    order = strat.orders[0]
    assert order.status == order.Completed
    assert bt.num2date(order.executed.dt) == bars.index[j]
    assert order.executed.size == 10
    assert order.executed.price == pytest.approx(min(bars["open"].iloc[j], limit), rel=1e-7)
    assert "Accepted" in statuses(strat)


def test_a_stop_order_becomes_an_ib_stop_with_the_stop_as_aux_price(tmp_path):
    def send(s):
        return s.sell(size=5, exectype=bt.Order.Stop, price=s.data.close[0] * 0.9)

    strat, gateway, *_ = session(tmp_path, send)
    placed = gateway.orders[0]
    assert placed["orderType"] == "STP" and placed["action"] == "SELL"
    assert placed["auxPrice"] == pytest.approx(strat.orders[0].created.price, rel=1e-6)


def test_stop_limit_and_trailing_stop_map_to_ib_types(tmp_path):
    def send(s):
        c = s.data.close[0]
        return [
            s.buy(size=3, exectype=bt.Order.StopLimit, price=c * 1.05, plimit=c * 1.06),
            s.sell(size=3, exectype=bt.Order.StopTrail, trailpercent=0.05),
        ]

    strat, gateway, *_ = session(tmp_path, send)
    kinds = {o["orderType"]: o for o in gateway.orders}
    assert kinds["STP LMT"]["lmtPrice"] == pytest.approx(strat.orders[0].created.pricelimit)
    assert kinds["TRAIL"]["trailingPercent"] == pytest.approx(5.0)


def test_a_bracket_sends_parent_and_children_with_parent_id_and_transmit(tmp_path):
    def send(s):
        c = s.data.close[0]
        return s.buy_bracket(size=10, exectype=bt.Order.Market, stopprice=c * 0.9,
                             limitprice=c * 1.1)  # fmt: skip

    strat, gateway, *_ = session(tmp_path, send)
    parent, stop, limit = gateway.orders[:3]
    assert parent["transmit"] is False and limit["transmit"] is True
    assert stop["parentId"] == parent["orderId"] == limit["parentId"]
    assert strat.orders[0].status == bt.Order.Completed
    assert strat.orders[0].executed.price == pytest.approx(gateway.fills[0]["price"])


def test_partial_fills_arrive_as_backtrader_partial_executions(tmp_path):
    strat, gateway, journal, _ = session(tmp_path, lambda s: s.buy(size=90),
                                         faults=Faults(partial_fills=3))  # fmt: skip
    assert statuses(strat).count("Partial") == 2
    assert strat.orders[0].status == bt.Order.Completed
    assert strat.orders[0].executed.size == 90
    assert len(journal.fills()) == 3
    assert sum(f["shares"] for f in journal.fills()) == 90
    assert strat.broker.getposition(strat.data).size == 90


def test_a_rejected_order_reaches_the_strategy_as_rejected(tmp_path):
    strat, gateway, journal, _ = session(tmp_path, lambda s: s.buy(size=10),
                                         faults=Faults(reject_orders={1}))  # fmt: skip
    assert strat.orders[0].status == bt.Order.Rejected
    assert journal.orders()[0]["status"] == "Rejected"
    assert strat.broker.getposition(strat.data).size == 0


def test_an_order_above_the_quantity_limit_is_refused_before_it_is_sent(tmp_path):
    strat, gateway, journal, _ = session(tmp_path, lambda s: s.buy(size=1000),
                                         limits=Limits(max_quantity=100))  # fmt: skip
    assert gateway.orders == []
    assert strat.orders[0].status == bt.Order.Rejected
    assert "max_quantity" in journal.orders()[0]["why"]


class CancelLater(OneOrder):
    """Cancels its order three bars after sending it."""

    def next(self):
        super().next()
        if self.orders and len(self.data) == self.p.at + 4 and self.orders[0].alive():
            self.cancel(self.orders[0])


def test_cancel_reaches_the_gateway_and_the_strategy(tmp_path):
    def send(s):
        return s.buy(size=10, exectype=bt.Order.Limit, price=s.data.close[0] * 0.5)

    strat, gateway, journal, _ = session(tmp_path, send, strategy=CancelLater)
    assert strat.orders[0].status == bt.Order.Canceled
    assert journal.orders()[0]["status"] == "Cancelled"
    assert gateway.order_states()[0]["status"] == "Cancelled"


def test_a_pacing_violation_on_the_warm_up_request_is_waited_out_and_retried(tmp_path):
    from kerastrader.brokers.ib.pacing import HistoricalPacer

    strat, gateway, journal, bars = session(
        tmp_path, lambda s: s.buy(size=1), faults=Faults(pacing_violation_on={1}),
        pacer=HistoricalPacer(identical_seconds=0.2),
    )  # fmt: skip
    assert len(journal.bars("GEN")) == len(bars)  # the whole history arrived on the retry
    assert strat.orders[0].status == bt.Order.Completed


class ModifyLater(OneOrder):
    """Moves its far-away limit up to the market two bars after sending it."""

    def next(self):
        super().next()
        if self.orders and len(self.data) == self.p.at + 3 and self.orders[0].alive():
            self.broker.modify(self.orders[0], price=self.data.close[0] * 1.05)


def test_modify_moves_a_working_limit_and_it_fills(tmp_path):
    def send(s):
        return s.buy(size=10, exectype=bt.Order.Limit, price=s.data.close[0] * 0.5)

    strat, gateway, journal, _ = session(tmp_path, send, strategy=ModifyLater)
    assert len(gateway.orders) == 2  # placed, then placed again with the same id: a modify
    assert gateway.orders[0]["orderId"] == gateway.orders[1]["orderId"]
    assert strat.orders[0].status == bt.Order.Completed
    assert strat.orders[0].executed.price <= gateway.orders[1]["lmtPrice"] + 1e-9

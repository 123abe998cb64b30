"""The IB broker's orders against the IB-like gateway: what IB refuses, holds or works on.

A Backtrader strategy on 30-minute bars (built from IB's 5-second bars) sends its orders
through ``IBBroker`` and the real ib_async client to a simulated gateway in its IB-like mode
(``tests/ibsession.py``); each test checks what the gateway received and what the strategy
was told.
"""

from __future__ import annotations

import backtrader as bt

from kerastrader.brokers.ib.broker import to_tick
from kerastrader.brokers.ib.simulator import Faults
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from kerastrader.brokers.journal import Journal
from kerastrader.brokers.safety import Limits
from tests.iblike import HISTORY, make_bars
from tests.ibsession import run


def why(journal: Journal, ref: str) -> list[str]:
    return [s["why"] for s in journal.status_history(ref) if s["why"]]


def test_prices_go_to_ib_on_the_contracts_minimum_tick(tmp_path) -> None:
    def send(s):
        c = s.data.close[0]
        return [
            s.buy(size=10, exectype=bt.Order.Limit, price=c * 0.97123),
            *s.buy_bracket(
                size=10, price=c * 0.99871, stopprice=c * 0.95337, limitprice=c * 1.04441
            ),  # fmt: skip
        ]

    strategy, gateway, _, _ = run(tmp_path, send, ib=IBLike(lockstep_seconds=1800, min_tick=0.05))
    prices = [p for o in gateway.orders for p in (o["lmtPrice"], o["auxPrice"]) if p]
    assert len(prices) == 4
    assert all(abs(p / 0.05 - round(p / 0.05)) < 1e-9 for p in prices)
    assert all(o.status != bt.Order.Rejected for o in strategy.orders)


def test_an_order_refused_by_ibs_precautions_is_rejected_with_ibs_text(tmp_path) -> None:
    ib = IBLike(lockstep_seconds=1800, bypass_precautions=False, size_limit=5)
    strategy, gateway, journal, _ = run(tmp_path, lambda s: s.buy(size=10), ib=ib)
    assert strategy.orders[0].status == bt.Order.Rejected
    [order] = journal.orders()
    assert order["status"] == "Rejected"
    assert order["why"].startswith('383 The following order "ID:')
    assert "size exceeds the Size Limit of 5" in order["why"]


def test_a_refused_cancel_leaves_the_order_working(tmp_path) -> None:
    def send(s):
        return s.buy(size=10, exectype=bt.Order.Limit, price=s.data.close[0] * 0.5)

    strategy, gateway, journal, _ = run(tmp_path, send, later=lambda s: s.cancel(s.orders[0]),
                                     faults=Faults(refuse_cancel={1}))  # fmt: skip
    order = strategy.orders[0]
    assert order.alive() and order.status == bt.Order.Accepted
    assert gateway.order_states()[0]["status"] == "Submitted"
    assert any(w.startswith("cancel refused: 161 Cancel attempted") for w in
               why(journal, order.info["ib_ref"]))  # fmt: skip


def test_a_refused_modify_leaves_the_order_working_at_its_old_price(tmp_path) -> None:
    def send(s):
        return s.buy(size=10, exectype=bt.Order.Limit, price=s.data.close[0] * 0.5)

    def later(s):
        s.broker.modify(s.orders[0], price=s.data.close[0] * 0.6)

    strategy, gateway, journal, _ = run(tmp_path, send, later=later,
                                     faults=Faults(refuse_modify={1}))  # fmt: skip
    order = strategy.orders[0]
    state = gateway.order_states()[0]
    assert order.alive() and state["status"] == "Submitted"
    assert to_tick(order.created.price, 0.01) == state["lmtPrice"]  # the old price, on both
    assert any(w.startswith("modify refused: 105") for w in why(journal, order.info["ib_ref"]))


def test_a_parent_refused_locally_sends_no_children(tmp_path) -> None:
    def send(s):
        c = s.data.close[0]  # the parent (at c) is over the limit, its stop child (at 0.9 c) not
        return s.buy_bracket(size=100, price=c, stopprice=c * 0.9, limitprice=c * 1.1)

    limits = Limits(max_notional=100 * make_bars()["close"].iloc[HISTORY] * 0.95)
    strategy, gateway, journal, _ = run(tmp_path, send, limits=limits)
    assert gateway.orders == []
    assert [o.status for o in strategy.orders] == [bt.Order.Rejected] * 3
    assert "its parent order" in journal.orders()[1]["why"]


def test_a_short_sale_waiting_for_a_locate_is_held_not_rejected(tmp_path) -> None:
    ib = IBLike(lockstep_seconds=1800, hard_to_borrow=frozenset({"AAA"}), locate_steps=12)
    strategy, gateway, journal, _ = run(tmp_path, lambda s: s.sell(size=10), ib=ib)
    order = strategy.orders[0]
    assert order.status == bt.Order.Completed and order.executed.size == -10
    history = [s["status"] for s in journal.status_history(order.info["ib_ref"])]
    assert "Held" in history and "Rejected" not in history
    assert gateway.positions() == {"AAA": -10}


def test_modify_on_a_trailing_stop_moves_its_stop_and_keeps_its_trail(tmp_path) -> None:
    def send(s):
        return s.sell(size=10, exectype=bt.Order.StopTrail, trailamount=2.0,
                      price=s.data.close[0] - 2.0)  # fmt: skip

    def later(s):
        s.broker.modify(s.orders[0], price=s.data.close[0] - 1.5)

    strategy, gateway, _, _ = run(tmp_path, send, later=later)
    placed, modified = gateway.orders[:2]
    assert placed["orderType"] == modified["orderType"] == "TRAIL"
    assert placed["auxPrice"] == modified["auxPrice"] == 2.0  # the trail
    assert modified["trailStopPrice"] != placed["trailStopPrice"]
    assert modified["trailStopPrice"] == to_tick(strategy.orders[0].created.price, 0.01)


def test_a_stop_trail_limit_goes_to_ib_as_trail_limit_with_its_limit_offset(tmp_path) -> None:
    def send(s):
        c = s.data.close[0]
        return s.sell(size=10, exectype=bt.Order.StopTrailLimit, trailamount=2.0,
                      price=c - 2.0, plimit=c - 2.5)  # fmt: skip

    strategy, gateway, _, _ = run(tmp_path, send)
    [placed] = gateway.orders
    assert placed["orderType"] == "TRAIL LIMIT"
    assert placed["lmtPriceOffset"] == 0.5 and placed["auxPrice"] == 2.0
    assert strategy.orders[0].status == bt.Order.Accepted

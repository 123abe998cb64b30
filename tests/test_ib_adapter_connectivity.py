"""The IB store, broker and feed through IB's connectivity events and real-time bar refusals,
against the IB-like gateway (``tests/ibsession.py``: a strategy on 30-minute bars).

1100 arrives with the socket open: orders wait; 1102 sends them; 1101 also means the
real-time subscriptions are gone and must be made again. Refused real-time bars end the
session with a clear line (or are asked for again). A connection never restored ends it too.
"""

from __future__ import annotations

import threading
import time

import backtrader as bt

from kerastrader.brokers.ib.simulator.scenarios import IBLike
from tests.iblike import HISTORY, make_bars
from tests.ibsession import LIVE_DAYS, run

BARS_PER_DAY = 13  # 30-minute bars from 09:30 to 16:00


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met within the timeout"
        time.sleep(0.005)


def test_1100_holds_orders_until_1102_and_then_sends_them(tmp_path) -> None:
    def send(s):
        s.gateway.connectivity(1100)
        wait_for(lambda: s.broker.store.trading_paused)  # IB's 1100 has reached the client
        threading.Timer(0.5, s.gateway.connectivity, (1102,)).start()
        return s.buy(size=10)

    strategy, gateway, journal, store = run(tmp_path, send)
    order = strategy.orders[0]
    statuses = [s["status"] for s in journal.status_history(order.info["ib_ref"])]
    assert statuses[:2] == ["PendingSubmit", "Unsent"]
    assert order.status == bt.Order.Completed and len(gateway.fills) == 1
    assert [o["orderRef"] for o in gateway.orders] == [order.info["ib_ref"]]  # sent once
    events = [s["info"].get("event") for s in journal.sessions()]
    assert "paused" in events and "resumed" in events
    assert not store.trading_paused and store.reconnects == 0  # the socket never dropped


def test_1101_subscribes_to_the_real_time_bars_again(tmp_path) -> None:
    def send(s):
        s.gateway.connectivity(1100)
        s.gateway.connectivity(1101)

    strategy, gateway, _, store = run(tmp_path, send, idle_exit=5.0)
    assert gateway.market.rt_requests == 2
    assert gateway.finished.is_set()
    last_day = make_bars().index[HISTORY + LIVE_DAYS - 1].date()
    assert strategy.data.datetime.date(0) == last_day  # bars went on to the end
    assert strategy.live >= LIVE_DAYS * BARS_PER_DAY - 2  # at most the outage's bar is lost
    assert store.fatal is None


def test_refused_real_time_bars_end_the_session_with_one_clear_line(tmp_path) -> None:
    ib = IBLike(lockstep_seconds=1800, competing_session=frozenset({"AAA"}))
    strategy, gateway, _, store = run(tmp_path, ib=ib)
    assert strategy.live == 0
    assert store.fatal is not None and "\n" not in store.fatal
    assert store.fatal.startswith(
        "no real-time bars: IB error 10197 for AAA (STK, SMART, USD): No market data during "
        "competing live session; the live account is logged in elsewhere"
    )


def test_with_retry_refused_real_time_bars_are_asked_for_again(tmp_path) -> None:
    ib = IBLike(lockstep_seconds=1800, competing_session=frozenset({"AAA"}))
    strategy, gateway, _, store = run(tmp_path, ib=ib, idle_exit=1.5, realtime_errors="retry",
                                      realtime_retry_seconds=0.2)  # fmt: skip
    assert gateway.market.rt_requests >= 3
    assert store.fatal is None  # ended by paper.stop_after_idle, not by the refusal


def test_a_connection_never_restored_ends_the_session(tmp_path) -> None:
    def send(s):
        threading.Thread(target=s.gateway.stop).start()  # IB Gateway goes away for good

    strategy, gateway, _, store = run(tmp_path, send, reconnect_delays=(0.05,), max_reconnects=3)
    assert strategy.live == 3
    assert store.fatal is not None
    assert "was lost and not restored after 3 attempts" in store.fatal

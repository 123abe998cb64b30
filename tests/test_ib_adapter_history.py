"""The IB store's history requests against the IB-like gateway: IB's refusals become one clear
line at once, pacing is waited out within a bound, and no bars at all is an error.

Each test runs the project's ``IBStore`` (ib_async on its own thread) against a simulated
gateway in its IB-like mode on loopback. (Bars: ``tests/iblike.py``.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from ib_async import Stock

from kerastrader.brokers.ib.pacing import HistoricalPacer
from kerastrader.brokers.ib.simulator import Faults, SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from kerastrader.brokers.ib.store import HistoryRefused, IBStore
from tests.iblike import HISTORY, make_bars


@pytest.fixture
def connect() -> Iterator:
    """``connect(ib=IBLike(...), faults=..., **store_kwargs)``: a started gateway and store."""
    running: list = []

    def start(ib: IBLike | None = None, faults: Faults | None = None, **store_kwargs):
        gateway = SimulatedGateway({"AAA": make_bars()}, history=HISTORY, ib=ib or IBLike(),
                                   faults=faults)  # fmt: skip
        host, port = gateway.start()
        store = IBStore(host, port, client_id=1, lockstep=True, **store_kwargs)
        running.append((gateway, store))
        store.start()
        return gateway, store, store.qualify(Stock("AAA", "SMART", "USD"))

    yield start
    for gateway, store in running:
        store.stop()
        gateway.stop()


def test_history_comes_back_oldest_first_and_complete(connect) -> None:
    _, store, contract = connect()
    bars = store.history(contract, "1 M", "1 day")
    frame = make_bars().iloc[:HISTORY]
    assert [b.close for b in bars] == list(frame["close"].iloc[-len(bars) :])


def test_no_market_data_permissions_fail_at_once_naming_the_contract_and_the_fix(
    connect,
) -> None:
    _, store, contract = connect(IBLike(no_permissions=frozenset({"AAA"})))
    started = time.monotonic()
    with pytest.raises(HistoryRefused) as refused:
        store.history(contract, "1 M", "1 day")
    line = str(refused.value)
    assert time.monotonic() - started < 5  # no pacing waits: asking again cannot help
    assert line.startswith("IB error 162 for AAA (STK, SMART, USD): ")
    assert "No market data permissions for NYSE STK" in line
    assert "Market Data Subscriptions" in line and "share the live account's market data" in line


def test_no_data_fails_at_once_naming_the_contract(connect) -> None:
    _, store, contract = connect(IBLike(no_data=frozenset({"AAA"})))
    with pytest.raises(HistoryRefused, match=r"HMDS query returned no data: AAA@SMART Trades; "):
        store.history(contract, "1 M", "1 day")


def test_a_pacing_violation_is_waited_out_and_the_request_retried(connect) -> None:
    gateway, store, contract = connect(faults=Faults(pacing_violation_on={1}))
    store.pacer = HistoricalPacer(identical_seconds=0.2)
    bars = store.history(contract, "1 M", "1 day")
    assert len(bars) > 0 and gateway.market.hist_requests == 2


def test_pacing_beyond_the_bound_ends_with_a_clear_error(connect) -> None:
    faults = Faults(pacing_violation_on={1, 2, 3, 4, 5, 6})
    _, store, contract = connect(faults=faults, pacing_wait_limit=0.5)
    store.pacer = HistoricalPacer(identical_seconds=0.2)
    with pytest.raises(HistoryRefused, match=r"pacing violations \(error 162\) after 0 s"):
        store.history(contract, "1 M", "1 day")


def test_an_answer_without_bars_is_an_error_not_an_empty_warm_up(connect) -> None:
    # The happy-path gateway answers a window without bars with an empty list, as ib_async
    # itself returns one when its own timeout expires.
    gateway = SimulatedGateway({"AAA": make_bars()}, history=HISTORY)
    host, port = gateway.start()
    store = IBStore(host, port, client_id=1, lockstep=True)
    try:
        store.start()
        contract = store.qualify(Stock("AAA", "SMART", "USD"))
        with pytest.raises(HistoryRefused, match="IB sent no historical bars for AAA"):
            store.history(contract, "1 D", "1 day", end="19900102 00:00:00")
    finally:
        store.stop()
        gateway.stop()


def test_the_contracts_minimum_tick_comes_from_its_details(connect) -> None:
    _, store, contract = connect(IBLike(min_tick=0.05))
    assert store.min_tick(contract) == 0.05

"""The simulated IB gateway, exercised by the real ib_async client over a loopback socket.

Each test starts a :class:`SimulatedGateway` on a free port, connects ``ib_async.IB`` to it as
to a paper account and checks one behaviour. The bars are generated: a steady rise of 0.5 a
day from 100 (open = close - 0.2, high = close + 1, low = close - 1.2), 60 history bars and
40 replayed ones, and tests that need a gap or a fall edit a row. The default broker charges
0.1% of value and slips market and stop fills by 5 bps against the trader.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ib_async import (
    IB,
    LimitOrder,
    MarketOrder,
    Order,
    PriceCondition,
    StopLimitOrder,
    StopOrder,
    TagValue,
    TimeCondition,
)
from ib_async.client import Client
from ib_async.contract import ComboLeg, Contract, DeltaNeutralContract, Stock
from ib_async.decoder import Decoder

from kerastrader.brokers.ib.simulator import (
    Faults,
    SimulatedGateway,
    completed_order_fields,
    open_order_fields,
    parse_place_order,
)
from kerastrader.brokers.ib.wire import (
    API_PREFIX,
    FrameReader,
    ProtocolError,
    encode_fields,
    encode_handshake,
    format_field,
    parse_version_range,
    split_payload,
)
from tests import iblike
from tests.iblike import session, started_gateways

HISTORY = 60
REPLAY = 40
SLIP = 5 / 1e4
COMMISSION = 0.001


def make_bars(n: int = HISTORY + REPLAY, start: float = 100.0) -> pd.DataFrame:
    """Daily bars rising 0.5 a day (``tests/iblike.py``'s): easy to reason about which price
    each order meets."""
    return iblike.make_bars(n, start)


def _gateway(bars: dict[str, pd.DataFrame] | None = None, **kwargs: Any) -> SimulatedGateway:
    return SimulatedGateway(bars or {"AAA": make_bars()}, history=HISTORY, **kwargs)


@pytest.fixture
def gateways() -> Iterator[Callable[..., SimulatedGateway]]:
    """Start gateways on free ports; stop them all after the test."""
    yield from started_gateways(_gateway)


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait (letting the client's event loop run) until ``predicate()`` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        await asyncio.sleep(0.005)


async def subscribe(ib: IB, symbol: str = "AAA") -> Any:
    """Qualify a stock, subscribe to its real-time bars and wait for the first one."""
    [contract] = await ib.qualifyContractsAsync(Stock(symbol, "SMART", "USD"))
    bars = ib.reqRealTimeBars(contract, 5, "TRADES", False)
    await until(lambda: len(bars) >= 1)
    return contract, bars


async def step(ib: IB, bars: Any) -> None:
    """Tell the lockstep gateway this bar is handled (reqCurrentTime); wait for the next one."""
    seen = len(bars)
    await ib.reqCurrentTimeAsync()
    await until(lambda: len(bars) > seen)


def row(frame: pd.DataFrame, i: int) -> pd.Series:
    return frame.iloc[i]


# ----------------------------------------------------------------------------- wire framing


def test_frames_are_length_prefixed_nul_terminated_fields() -> None:
    frame = encode_fields(9, 1, True, None, 0.1 + 0.2, 100.0, "DU1")
    assert frame == b"\x00\x00\x00\x13" + b"9\x001\x001\x00\x000.3\x00100\x00DU1\x00"
    assert format_field(False) == "0" and format_field(float("nan")) == ""


def test_frame_reader_reassembles_frames_split_anywhere() -> None:
    stream = encode_handshake(157, 178) + encode_fields(71, 2, 1, "") + encode_fields(49, 1)
    reader = FrameReader(api_prefix=True)
    frames = [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])]
    assert frames == [["v157..178"], ["71", "2", "1", ""], ["49", "1"]]
    assert parse_version_range(frames[0][0]) == (157, 178)
    assert reader.pending == 0
    with pytest.raises(ProtocolError):
        list(FrameReader(api_prefix=True).feed(b"GET / HTTP/1.1\r\n"))
    assert stream.startswith(API_PREFIX)


# --------------------------------------------------------------- placeOrder and openOrder layouts


def _order_catalog() -> list[tuple[str, Contract, Order]]:
    """One ib_async order of every shape placeOrder can take (each optional block switched on)."""
    stock = Stock("AAA", "SMART", "USD")
    bag = Contract(secType="BAG", symbol="AAA", exchange="SMART", currency="USD")
    bag.comboLegs = [ComboLeg(conId=1, ratio=1, action="BUY", exchange="SMART")]
    combo = LimitOrder("BUY", 1, 1.5, smartComboRoutingParams=[TagValue("NonGuaranteed", "1")])
    dn_contract = Stock("AAA", "SMART", "USD")
    dn_contract.deltaNeutralContract = DeltaNeutralContract(conId=7, delta=0.5, price=100.0)
    trail_pct = Order(action="SELL", totalQuantity=10, orderType="TRAIL", trailingPercent=5.0)
    trail_amount = Order(action="SELL", totalQuantity=10, orderType="TRAIL", auxPrice=2.5)
    trail_amount.trailStopPrice = 97.5
    algo = LimitOrder("BUY", 10, 99.0, algoStrategy="Adaptive")
    algo.algoParams = [TagValue("adaptivePriority", "Normal")]
    conditional = LimitOrder("BUY", 10, 99.0, conditionsCancelOrder=True)
    conditional.conditions = [
        PriceCondition(price=100.0, conId=1, exch="SMART"),
        TimeCondition(time="20250101 10:00:00"),
    ]
    misc = LimitOrder("BUY", 10, 99.0, orderMiscOptions=[TagValue("a", "b")])
    vol = Order(action="BUY", totalQuantity=1, orderType="VOL", volatility=0.3, volatilityType=2)
    vol.deltaNeutralOrderType = "MKT"
    scale = LimitOrder("BUY", 100, 99.0, scaleInitLevelSize=10, scaleSubsLevelSize=10)
    scale.scalePriceIncrement = 0.5
    peg_best = Order(action="BUY", totalQuantity=10, orderType="PEG BEST", minTradeQty=1)
    peg_best.competeAgainstBestOffset = math.inf
    peg_best.midOffsetAtWhole, peg_best.midOffsetAtHalf = 0.01, 0.005
    peg_mid = Order(action="BUY", totalQuantity=10, orderType="PEG MID", midOffsetAtWhole=0.01)
    peg_bench = Order(action="BUY", totalQuantity=10, orderType="PEG BENCH")
    peg_bench.referenceContractId, peg_bench.peggedChangeAmount = 5, 0.1
    return [
        ("market", stock, MarketOrder("BUY", 100)),
        ("limit", stock, LimitOrder("SELL", 50, 101.25, tif="GTC", orderRef="ref-1")),
        ("stop", stock, StopOrder("SELL", 10, 95.5)),
        ("stop limit", stock, StopLimitOrder("BUY", 10, 105.0, 104.0)),
        ("trail percent", stock, trail_pct),
        ("trail amount", stock, trail_amount),
        ("bracket child", stock, LimitOrder("SELL", 10, 110.0, parentId=41, transmit=False)),
        ("oca", stock, LimitOrder("SELL", 10, 110.0, ocaGroup="g1", ocaType=1)),
        ("algo", stock, algo),
        ("conditions", stock, conditional),
        ("misc options", stock, misc),
        ("hedge", stock, LimitOrder("BUY", 10, 99.0, hedgeType="F", hedgeParam="1")),
        ("delta neutral", dn_contract, vol),
        ("scale", stock, scale),
        ("peg best", Stock("AAA", "IBKRATS", "USD"), peg_best),
        ("peg mid", stock, peg_mid),
        ("peg bench", stock, peg_bench),
        ("combo", bag, combo),
    ]


def sent_by_ib_async(contract: Contract, order: Order, server_version: int) -> list[str]:
    """The fields ib_async's own Client.placeOrder writes for this order (no socket)."""
    client = Client(wrapper=None)
    client._serverVersion = server_version
    client.connState = Client.CONNECTED
    sent: list[str] = []
    client.sendMsg = sent.append  # type: ignore[method-assign]
    client.placeOrder(42, contract, order)
    return split_payload(sent[0].encode())


CATALOG = _order_catalog()
CATALOG_IDS = [name for name, _, _ in CATALOG]


@pytest.mark.parametrize("server_version", [176, 178])
@pytest.mark.parametrize("name,contract,order", CATALOG, ids=CATALOG_IDS)
def test_place_order_parser_walks_ib_async_field_order(
    name: str, contract: Contract, order: Order, server_version: int
) -> None:
    parsed = parse_place_order(sent_by_ib_async(contract, order, server_version), server_version)
    raw = parsed["order"]
    assert parsed["orderId"] == "42"
    assert parsed["contract"]["symbol"] == "AAA"
    assert (raw["action"], raw["orderType"]) == (order.action, order.orderType)
    assert float(raw["totalQuantity"]) == order.totalQuantity
    assert raw["transmit"] == ("1" if order.transmit else "0")
    assert int(raw["parentId"]) == order.parentId
    assert raw["ocaGroup"] == order.ocaGroup
    assert len(raw["conditions"]) == len(order.conditions)
    assert raw.get("algoParams", []) == [(p.tag, p.value) for p in order.algoParams]
    for field_name in ("lmtPrice", "auxPrice", "trailingPercent", "trailStopPrice"):
        value = getattr(order, field_name)
        expected = "" if value is None or value >= 1e308 else value
        assert (float(raw[field_name]) if raw[field_name] else "") == expected, field_name


@pytest.mark.parametrize("name,contract,order", CATALOG, ids=CATALOG_IDS)
def test_open_and_completed_order_messages_decode_in_ib_async(
    name: str, contract: Contract, order: Order
) -> None:
    parsed = parse_place_order(sent_by_ib_async(contract, order, 176))
    raw = {**parsed["order"], "clientId": 3, "permId": 900_000_123, "filledQuantity": 0}
    received: list[tuple[str, Any, Any, Any]] = []

    class Wrapper:
        def openOrder(self, order_id: int, c: Contract, o: Order, state: Any) -> None:
            received.append(("open", c, o, state))

        def completedOrder(self, c: Contract, o: Order, state: Any) -> None:
            received.append(("completed", c, o, state))

    decoder = Decoder(Wrapper(), 176)  # type: ignore[arg-type]
    for fields in (
        open_order_fields(42, parsed["contract"], raw, {"status": "Submitted"}),
        completed_order_fields(parsed["contract"], raw, {"status": "Filled"}),
    ):
        decoder.interpret([format_field(f) for f in fields])
    assert [r[0] for r in received] == ["open", "completed"]
    for kind, _contract, decoded, state in received:
        assert (decoded.action, decoded.orderType) == (order.action, order.orderType), kind
        assert decoded.totalQuantity == order.totalQuantity
        assert decoded.permId == 900_000_123
        assert len(decoded.conditions) == len(order.conditions)
        assert decoded.algoParams == order.algoParams
        assert state.status == ("Submitted" if kind == "open" else "Filled")
    assert received[0][2].orderId == 42 and received[0][2].clientId == 3
    assert received[0][2].lmtPrice == order.lmtPrice


# -------------------------------------------------------------------------- connecting


def test_ib_async_connects_and_sees_the_paper_account(gateways) -> None:
    gateway = gateways()

    async def scenario(ib: IB) -> None:
        assert ib.isConnected()
        assert ib.managedAccounts() == ["DU123456"]
        values = {v.tag: float(v.value) for v in ib.accountValues() if v.currency == "USD"}
        assert values["NetLiquidation"] == values["TotalCashValue"] == 100_000.0
        assert ib.positions() == [] and ib.openTrades() == [] and ib.fills() == []

    session(gateway, scenario)


def test_a_known_stock_qualifies_and_an_unknown_one_fails_with_error_200(gateways) -> None:
    gateway = gateways()

    async def scenario(ib: IB) -> None:
        errors: list[int] = []
        ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
        known, unknown = Stock("AAA", "SMART", "USD"), Stock("ZZZ", "SMART", "USD")
        result = await ib.qualifyContractsAsync(known, unknown)
        assert result[0] is known and known.conId > 0
        assert result[1] is None and unknown.conId == 0
        assert errors == [200]

    session(gateway, scenario)


# -------------------------------------------------------------------------- market data


def test_historical_data_is_exactly_the_history_bars(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame})

    async def scenario(ib: IB) -> None:
        [contract] = await ib.qualifyContractsAsync(Stock("AAA", "SMART", "USD"))
        bars = await ib.reqHistoricalDataAsync(contract, "", "1 Y", "1 day", "TRADES", True)
        history = frame.iloc[:HISTORY]
        assert [b.date for b in bars] == [d.date() for d in history.index]
        got = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in bars])
        want = history[["open", "high", "low", "close", "volume"]].to_numpy()
        np.testing.assert_allclose(got, want)

    session(gateway, scenario)


def test_lockstep_releases_one_bar_per_reqcurrenttime(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame})

    async def scenario(ib: IB) -> None:
        _, bars = await subscribe(ib)
        await asyncio.sleep(0.2)
        assert len(bars) == 1, "no new bar until the client says it has handled this one"
        for _ in range(3):
            await step(ib, bars)
            await asyncio.sleep(0.05)
        assert len(bars) == 4
        expected = frame.index[HISTORY : HISTORY + 4].tz_localize("UTC")
        assert [b.time for b in bars] == list(expected)
        assert [b.close for b in bars] == list(frame["close"].iloc[HISTORY : HISTORY + 4])
        assert gateway.replay_index == {"AAA": HISTORY + 4}
        assert (await ib.reqCurrentTimeAsync()) == expected[-1]  # simulated time

    session(gateway, scenario)


def test_free_running_replay_sends_every_bar_and_sets_finished(gateways) -> None:
    gateway = gateways(lockstep=False, speed=0.0)

    async def scenario(ib: IB) -> None:
        _, bars = await subscribe(ib)
        await until(lambda: len(bars) == REPLAY)

    session(gateway, scenario)
    assert gateway.finished.wait(5)
    assert gateway.replay_index == {"AAA": HISTORY + REPLAY}


def test_two_symbols_advance_together_one_step_per_timestamp(gateways) -> None:
    gateway = gateways({"AAA": make_bars(), "BBB": make_bars(start=50.0)})

    async def scenario(ib: IB) -> None:
        _, aaa = await subscribe(ib, "AAA")
        _, bbb = await subscribe(ib, "BBB")
        await step(ib, aaa)
        await until(lambda: len(bbb) == 2)
        assert [b.time for b in aaa] == [b.time for b in bbb]
        assert gateway.replay_index == {"AAA": HISTORY + 2, "BBB": HISTORY + 2}

    session(gateway, scenario)


# -------------------------------------------------------------------------------- orders


def test_market_order_fills_at_next_open_plus_slippage_with_commission(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame})

    async def scenario(ib: IB) -> None:
        reports: list[float] = []
        ib.commissionReportEvent += lambda trade, fill, report: reports.append(report.commission)
        contract, bars = await subscribe(ib)  # bar HISTORY
        trade = ib.placeOrder(contract, MarketOrder("BUY", 100))
        await until(lambda: trade.orderStatus.status == "Submitted")
        await step(ib, bars)  # bar HISTORY + 1: the fill arrives before the bar
        assert trade.orderStatus.status == "Filled"
        assert reports == [trade.fills[0].commissionReport.commission]
        price = row(frame, HISTORY + 1)["open"] * (1 + SLIP)
        [fill] = trade.fills
        assert fill.execution.price == pytest.approx(price)
        assert fill.execution.shares == 100 and fill.execution.side == "BOT"
        assert fill.commissionReport.commission == pytest.approx(100 * price * COMMISSION)
        assert fill.execution.time == bars[-1].time
        assert [(p.contract.symbol, p.position) for p in ib.positions()] == [("AAA", 100)]

    session(gateway, scenario)
    assert gateway.positions() == {"AAA": 100}
    price = row(frame, HISTORY + 1)["open"] * (1 + SLIP)
    assert gateway.cash() == pytest.approx(100_000 - 100 * price * (1 + COMMISSION))


def test_unreached_limit_stays_submitted_until_cancelled(gateways) -> None:
    gateway = gateways()

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib)
        trade = ib.placeOrder(contract, LimitOrder("BUY", 10, 50.0))
        await step(ib, bars)
        await step(ib, bars)
        assert trade.orderStatus.status == "Submitted" and not trade.fills
        assert [t.order.orderId for t in ib.openTrades()] == [trade.order.orderId]
        ib.cancelOrder(trade.order)
        await until(lambda: trade.orderStatus.status == "Cancelled")

    session(gateway, scenario)
    assert gateway.order_states()[0]["status"] == "Cancelled"
    assert gateway.fills == []


def test_stop_gapped_through_fills_at_the_open_not_the_stop(gateways) -> None:
    frame = make_bars()
    gap = frame.index[HISTORY + 1]
    stop = frame.loc[frame.index[HISTORY], "close"] + 3.0
    frame.loc[gap, ["open", "high", "close"]] = [stop + 2.0, stop + 3.5, stop + 2.5]
    gateway = gateways({"AAA": frame})

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib)
        trade = ib.placeOrder(contract, StopOrder("BUY", 10, stop))
        await until(lambda: trade.orderStatus.status == "PreSubmitted")
        await step(ib, bars)
        assert trade.orderStatus.status == "Filled"
        assert trade.fills[0].execution.price == pytest.approx((stop + 2.0) * (1 + SLIP))

    session(gateway, scenario)


def test_bracket_fills_parent_then_one_child_and_cancels_the_other(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame})
    close = frame["close"].iloc[HISTORY]  # 130: the next bars open 130.3, 130.8 (high 132)

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib)
        bracket = ib.bracketOrder("BUY", 100, close + 1, close + 1.9, close - 10)
        parent, take_profit, stop_loss = (ib.placeOrder(contract, o) for o in bracket)
        await until(lambda: stop_loss.orderStatus.status == "PreSubmitted")
        assert parent.orderStatus.status == "Submitted"
        assert take_profit.orderStatus.status == "PreSubmitted", "children wait for the parent"
        await step(ib, bars)  # parent fills at the open
        assert parent.orderStatus.status == "Filled"
        assert take_profit.orderStatus.status == "Submitted"
        await step(ib, bars)  # high 132 reaches the take profit at 131.9
        assert take_profit.orderStatus.status == "Filled"
        await until(lambda: stop_loss.orderStatus.status == "Cancelled")
        assert parent.fills[0].execution.price == pytest.approx(
            row(frame, HISTORY + 1)["open"] * (1 + SLIP)
        )
        assert take_profit.fills[0].execution.price == pytest.approx(close + 1.9)
        assert stop_loss.fills == []

    session(gateway, scenario)
    assert gateway.positions() == {}
    assert [o["transmit"] for o in gateway.orders] == [False, False, True]


def test_trailing_stop_fills_after_a_fall_from_the_best_close(gateways) -> None:
    frame = make_bars()
    best = frame["close"].iloc[HISTORY + 2]
    drop = frame.index[HISTORY + 3]
    frame.loc[drop, ["open", "high", "low", "close"]] = [
        best * 0.97, best * 0.975, best * 0.90, best * 0.92,
    ]  # fmt: skip
    gateway = gateways({"AAA": frame})

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib)
        ib.placeOrder(contract, MarketOrder("BUY", 100))
        trail = ib.placeOrder(
            contract,
            Order(action="SELL", totalQuantity=100, orderType="TRAIL", trailingPercent=5.0),
        )
        for _ in range(2):  # the rise: the stop follows 5% under each close
            await step(ib, bars)
            assert trail.orderStatus.status == "PreSubmitted"
        await step(ib, bars)  # opens 3% down, trades 10% down: the 5% stop is hit inside
        assert trail.orderStatus.status == "Filled"
        expected = best * 0.95 * (1 - SLIP)
        assert trail.fills[0].execution.price == pytest.approx(expected)

    session(gateway, scenario)
    assert gateway.positions() == {}


def test_partial_fills_split_an_order_into_executions(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame}, faults=Faults(partial_fills=3))

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib)
        trade = ib.placeOrder(contract, MarketOrder("BUY", 100))
        await step(ib, bars)
        await until(lambda: trade.orderStatus.status == "Filled")
        executions = [f.execution for f in trade.fills]
        assert [e.shares for e in executions] == [34, 33, 33]
        assert [e.cumQty for e in executions] == [34, 67, 100]
        price = row(frame, HISTORY + 1)["open"] * (1 + SLIP)
        commissions = [f.commissionReport.commission for f in trade.fills]
        assert commissions == pytest.approx([s * price * COMMISSION for s in (34, 33, 33)])

    session(gateway, scenario)
    assert len(gateway.fills) == 3


def test_rejected_order_gets_error_201_and_ends_cancelled(gateways) -> None:
    gateway = gateways(faults=Faults(reject_orders={1}))

    async def scenario(ib: IB) -> None:
        errors: list[tuple[int, int, str]] = []
        ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
        contract, _ = await subscribe(ib)
        rejected = ib.placeOrder(contract, MarketOrder("BUY", 100))
        await until(lambda: rejected.orderStatus.status in ("Cancelled", "Inactive"))
        assert errors[0][:2] == (rejected.order.orderId, 201)
        assert errors[0][2].startswith("Order rejected - reason:")
        accepted = ib.placeOrder(contract, MarketOrder("BUY", 100))  # order 2 goes through
        await until(lambda: accepted.orderStatus.status == "Submitted")

    session(gateway, scenario)
    assert [s["status"] for s in gateway.order_states()] == ["Cancelled", "Submitted"]


def test_pacing_violation_answers_the_first_history_request_with_error_162(gateways) -> None:
    gateway = gateways(faults=Faults(pacing_violation_on={1}))

    async def scenario(ib: IB) -> None:
        errors: list[int] = []
        ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
        [contract] = await ib.qualifyContractsAsync(Stock("AAA", "SMART", "USD"))
        first = await ib.reqHistoricalDataAsync(contract, "", "1 Y", "1 day", "TRADES", True)
        second = await ib.reqHistoricalDataAsync(contract, "", "1 Y", "1 day", "TRADES", True)
        assert errors == [162]
        assert len(first) == 0 and len(second) == HISTORY

    session(gateway, scenario)


def test_reconnect_after_a_dropped_connection_restores_positions_and_executions(
    gateways,
) -> None:
    frame = make_bars()
    faults = Faults()
    gateway = gateways({"AAA": frame}, faults=faults)
    host, port = gateway.address

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib)
        bought = ib.placeOrder(contract, MarketOrder("BUY", 100))
        resting = ib.placeOrder(contract, LimitOrder("BUY", 10, 50.0))
        await step(ib, bars)
        assert bought.orderStatus.status == "Filled"

        faults.disconnect_after.append(gateway.messages_sent + 1)  # drop after the next reply
        await ib.reqCurrentTimeAsync()
        await until(lambda: not ib.isConnected())

        await ib.connectAsync(host, port, clientId=1, timeout=10)
        assert [(p.contract.symbol, p.position) for p in ib.positions()] == [("AAA", 100)]
        [fill] = ib.fills()
        assert fill.execution.execId == gateway.fills[0]["execId"]
        assert fill.commissionReport.commission == pytest.approx(gateway.fills[0]["commission"])
        assert [f.execution.execId for f in await ib.reqExecutionsAsync()] == [
            fill.execution.execId
        ]
        assert [t.order.orderId for t in ib.openTrades()] == [resting.order.orderId]
        done = [t for t in ib.trades() if t.orderStatus.status == "Filled"]
        assert [t.order.permId for t in done] == [bought.order.permId]

        replay_before = gateway.replay_index["AAA"]
        again = ib.reqRealTimeBars(contract, 5, "TRADES", False)
        await until(lambda: len(again) == 1)  # replay resumes with the next bar, none skipped
        assert again[0].time == frame.index[replay_before].tz_localize("UTC")

    session(gateway, scenario)


def test_gateway_records_match_what_the_client_saw(gateways) -> None:
    gateway = gateways(faults=Faults(partial_fills=2))

    async def scenario(ib: IB) -> tuple[list, list]:
        contract, bars = await subscribe(ib)
        trades = [
            ib.placeOrder(contract, MarketOrder("BUY", 20, orderRef="entry")),
            ib.placeOrder(contract, LimitOrder("SELL", 20, 132.0, orderRef="exit")),
            ib.placeOrder(contract, LimitOrder("BUY", 5, 10.0)),
        ]
        for _ in range(3):
            await step(ib, bars)
        ib.cancelOrder(trades[2].order)
        await until(lambda: trades[2].orderStatus.status == "Cancelled")
        return trades, ib.fills()

    trades, fills = session(gateway, scenario)
    assert [(o["orderId"], o["orderType"], o["orderRef"]) for o in gateway.orders] == [
        (t.order.orderId, t.order.orderType, t.order.orderRef) for t in trades
    ]
    assert [
        (f["execId"], f["orderId"], f["side"], f["shares"], f["orderRef"]) for f in gateway.fills
    ] == [
        (
            f.execution.execId,
            f.execution.orderId,
            f.execution.side,
            f.execution.shares,
            f.execution.orderRef,
        )
        for f in fills
    ]
    assert [f["price"] for f in gateway.fills] == pytest.approx([f.execution.price for f in fills])
    assert [f["commission"] for f in gateway.fills] == pytest.approx(
        [f.commissionReport.commission for f in fills]
    )
    assert gateway.positions() == {}


def test_broker_config_sets_the_commission_scheme_and_slippage(gateways) -> None:
    frame = make_bars()
    broker = {"commission_scheme": "ibkr_fixed", "slippage_bps": 0.0}
    gateway = gateways({"AAA": frame}, broker=broker)

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib)
        trade = ib.placeOrder(contract, MarketOrder("BUY", 100))
        await step(ib, bars)
        [fill] = trade.fills
        assert fill.execution.price == row(frame, HISTORY + 1)["open"]  # no slippage
        assert fill.commissionReport.commission == 1.0  # IB Fixed: USD 0.005 a share, min 1

    session(gateway, scenario)


def test_volume_cap_spreads_a_large_order_over_several_bars(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame}, broker={"volume_cap": 0.0001})  # 100 of 1,000,000

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib)
        trade = ib.placeOrder(contract, MarketOrder("BUY", 250))
        await step(ib, bars)
        assert (trade.orderStatus.status, trade.orderStatus.filled) == ("Submitted", 100)
        await step(ib, bars)
        await step(ib, bars)
        assert trade.orderStatus.status == "Filled"
        opens = frame["open"].iloc[HISTORY + 1 : HISTORY + 4] * (1 + SLIP)
        assert [(f.execution.shares, f.execution.price) for f in trade.fills] == [
            (100, pytest.approx(opens.iloc[0])),
            (100, pytest.approx(opens.iloc[1])),
            (50, pytest.approx(opens.iloc[2])),
        ]

    session(gateway, scenario)


def test_what_if_order_reports_commission_without_trading(gateways) -> None:
    gateway = gateways()

    async def scenario(ib: IB) -> None:
        [contract] = await ib.qualifyContractsAsync(Stock("AAA", "SMART", "USD"))
        state = await ib.whatIfOrderAsync(contract, MarketOrder("BUY", 100))
        last_close = make_bars()["close"].iloc[HISTORY - 1]
        assert state.commission == pytest.approx(100 * last_close * COMMISSION)
        assert float(state.initMarginChange) == pytest.approx(100 * last_close)

    session(gateway, scenario)
    assert gateway.orders == [] and gateway.fills == []


def test_a_second_connection_with_a_client_id_in_use_is_refused(gateways) -> None:
    gateway = gateways()
    host, port = gateway.address

    async def scenario(ib: IB) -> None:
        second = IB()
        errors: list[int] = []
        second.errorEvent += lambda req_id, code, text, contract: errors.append(code)
        with pytest.raises((TimeoutError, ConnectionError)):
            await second.connectAsync(host, port, clientId=1, timeout=0.5)
        assert errors == [326]
        assert ib.isConnected()

    session(gateway, scenario)


def test_intraday_history_dates_follow_format_date(gateways) -> None:
    frame = make_bars()
    frame.index = pd.date_range("2014-01-02 14:30", periods=len(frame), freq="5min")
    gateway = gateways({"AAA": frame})

    async def scenario(ib: IB) -> None:
        [contract] = await ib.qualifyContractsAsync(Stock("AAA", "SMART", "USD"))
        as_text = await ib.reqHistoricalDataAsync(contract, "", "1 D", "5 mins", "TRADES", True)
        as_epoch = await ib.reqHistoricalDataAsync(
            contract, "", "1 D", "5 mins", "TRADES", True, formatDate=2
        )
        first = frame.index[0]
        assert as_text[0].date == first.to_pydatetime()  # "20140102 14:30:00", naive UTC
        assert as_epoch[0].date == first.tz_localize("UTC")  # epoch seconds, tz-aware
        assert len(as_text) == len(as_epoch) == HISTORY

    session(gateway, scenario)

"""The IB-like gateway's orders, as a real IB Gateway reports them to the real ib_async client.

A fill is reported orderStatus first, then execDetails, then (a little later) the commission;
prices off the minimum tick get 110; order precautions 383; an order reaching the exchange
outside regular hours waits for the open (399), a DAY order expires at the close, a short
sale of a hard-to-borrow stock waits Inactive for a locate; ``reqExecutions`` reports today
only; during a connectivity outage orders work on and their reports come at the restore.
(Helpers and bars: ``tests/iblike.py``.)
"""

from __future__ import annotations

import asyncio
import time

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Order

from tests import iblike
from tests.iblike import (
    HISTORY,
    SESSION_BARS,
    SLIP,
    ack,
    at,
    make_bars,
    session,
    session_day,
    subscribe,
    until,
)

gateways = iblike.gateways  # the fixture
DAY_ACK = {"lockstep_seconds": 86_400}  # one acknowledgement releases a whole session
HALF_HOUR = 360  # 5-second bars in 30 minutes


def errors_of(ib: IB) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: seen.append((req_id, code, text))
    return seen


def test_a_fill_is_reported_status_first_then_execution_then_commission_later(
    gateways,
) -> None:
    gateway = gateways(lockstep_seconds=1800, commission_delay=0.1)

    async def scenario(ib: IB) -> None:
        events: list[tuple[str, float]] = []
        ib.orderStatusEvent += lambda t: events.append((t.orderStatus.status, time.monotonic()))
        ib.execDetailsEvent += lambda t, f: events.append(("execDetails", time.monotonic()))
        ib.commissionReportEvent += lambda t, f, r: events.append(("commission", time.monotonic()))
        contract, bars = await subscribe(ib, HALF_HOUR)
        trade = ib.placeOrder(contract, MarketOrder("BUY", 100))
        await until(lambda: trade.orderStatus.status == "Submitted")
        await ack(ib, bars, HALF_HOUR)  # fills on the 10:00:00 bar
        await until(lambda: events[-1][0] == "commission")
        names = [name for name, _ in events]
        assert names[-3:] == ["Filled", "execDetails", "commission"]
        assert events[-1][1] - events[-2][1] >= 0.09
        [fill] = trade.fills
        bar = bars[HALF_HOUR]
        assert bar.time == at(session_day(0), "10:00")
        assert fill.execution.price == pytest.approx(bar.open_ * (1 + SLIP))
        assert fill.execution.time == bar.time
        assert fill.commissionReport.commission > 0

    session(gateway, scenario)


def test_an_off_tick_limit_price_is_refused_with_error_110(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, _ = await subscribe(ib, HALF_HOUR)
        refused = ib.placeOrder(contract, LimitOrder("BUY", 10, 100.005))
        accepted = ib.placeOrder(contract, LimitOrder("BUY", 10, 100.01))
        await until(lambda: accepted.orderStatus.status == "Submitted")
        assert refused.orderStatus.status == "Cancelled"
        assert errors == [
            (
                refused.order.orderId,
                110,
                "The price does not conform to the minimum price variation for this contract.",
            )
        ]

    session(gateway, scenario)
    assert [s["status"] for s in gateway.order_states()] == ["Cancelled", "Submitted"]


def test_a_modify_to_an_off_tick_price_is_refused_and_the_order_works_on(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, _ = await subscribe(ib, HALF_HOUR)
        trade = ib.placeOrder(contract, LimitOrder("BUY", 10, 50.0))
        await until(lambda: trade.orderStatus.status == "Submitted")
        trade.order.lmtPrice = 50.005
        ib.placeOrder(contract, trade.order)
        await until(lambda: errors)
        assert errors[0][1] == 110
        assert trade.isActive()  # ib_async reads 110 on a working order as a warning
        [state] = gateway.order_states()
        assert (state["status"], state["lmtPrice"]) == ("Submitted", 50.0)

    session(gateway, scenario)


def test_reqexecutions_the_next_day_no_longer_reports_yesterdays_fills(gateways) -> None:
    gateway = gateways(**DAY_ACK)

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib, SESSION_BARS)  # Thursday, to the close
        trade = ib.placeOrder(contract, MarketOrder("BUY", 100))
        await ack(ib, bars, SESSION_BARS)  # Friday: filled at the open
        await until(lambda: trade.orderStatus.status == "Filled")
        today = await ib.reqExecutionsAsync()
        assert [f.execution.time for f in today] == [at(session_day(1), "09:30")]
        await ack(ib, bars, SESSION_BARS)  # Monday
        assert len(await ib.reqExecutionsAsync()) == 0
        assert [p.position for p in ib.positions()] == [100]

    session(gateway, scenario)
    assert len(gateway.fills) == 1


def test_a_market_order_after_the_close_waits_for_the_next_open(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame}, **DAY_ACK)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, bars = await subscribe(ib, SESSION_BARS)
        trade = ib.placeOrder(contract, MarketOrder("BUY", 100))
        await until(lambda: trade.orderStatus.status == "PreSubmitted")
        [(order_id, code, text)] = errors
        assert (order_id, code) == (trade.order.orderId, 399)
        assert text.endswith(
            "Warning: your order will not be placed at the exchange until "
            f"{session_day(1)} 09:30:00 US/Eastern"
        )
        await ack(ib, bars, SESSION_BARS)
        await until(lambda: trade.orderStatus.status == "Filled")
        [fill] = trade.fills
        assert fill.execution.price == pytest.approx(frame["open"].iloc[HISTORY + 1] * (1 + SLIP))

    session(gateway, scenario)


def test_an_unfilled_day_order_is_cancelled_at_the_close(gateways) -> None:
    gateway = gateways(**DAY_ACK)

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib, SESSION_BARS)
        day = ib.placeOrder(contract, LimitOrder("BUY", 10, 50.0, tif="DAY"))
        gtc = ib.placeOrder(contract, LimitOrder("BUY", 10, 50.0, tif="GTC"))
        await ack(ib, bars, SESSION_BARS)  # Friday: both work all day
        assert day.orderStatus.status == gtc.orderStatus.status == "Submitted"
        await ack(ib, bars, SESSION_BARS)  # Monday's first bar: Friday's DAY order is gone
        await until(lambda: day.orderStatus.status == "Cancelled")
        assert gtc.orderStatus.status == "Submitted"

    session(gateway, scenario)


def test_an_order_above_the_precautionary_size_limit_gets_383(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800, bypass_precautions=False, size_limit=500)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, _ = await subscribe(ib, HALF_HOUR)
        refused = ib.placeOrder(contract, MarketOrder("BUY", 600))
        accepted = ib.placeOrder(contract, MarketOrder("BUY", 500))
        await until(lambda: accepted.orderStatus.status == "Submitted")
        assert refused.orderStatus.status == "Cancelled"
        assert errors == [
            (
                refused.order.orderId,
                383,
                f'The following order "ID:{refused.order.orderId}" size exceeds the Size Limit '
                "of 500. Restriction is specified in Precautionary Settings of Global "
                "Configuration/Presets.",
            )
        ]

    session(gateway, scenario)


def test_an_order_above_the_total_value_limit_gets_383(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800, bypass_precautions=False, value_limit=10_000)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, _ = await subscribe(ib, HALF_HOUR)
        refused = ib.placeOrder(contract, LimitOrder("BUY", 200, 100.0))
        await until(lambda: errors)
        [(_, code, text)] = errors
        assert code == 383
        assert "value estimate of 20,000.00 USD exceeds the Total Value Limit of 10,000 USD" in text
        await until(lambda: refused.orderStatus.status == "Cancelled")

    session(gateway, scenario)


def test_with_precautions_bypassed_a_large_order_goes_through(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800)  # the default: Gateway set up as the README says

    async def scenario(ib: IB) -> None:
        contract, _ = await subscribe(ib, HALF_HOUR)
        trade = ib.placeOrder(contract, MarketOrder("BUY", 600))
        await until(lambda: trade.orderStatus.status == "Submitted")

    session(gateway, scenario)


def test_a_short_sale_of_a_hard_to_borrow_stock_waits_inactive_for_a_locate(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800, hard_to_borrow=frozenset({"AAA"}), locate_steps=12)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, bars = await subscribe(ib, HALF_HOUR)
        trade = ib.placeOrder(contract, MarketOrder("SELL", 100))
        await until(lambda: trade.orderStatus.status == "Inactive")
        assert trade.orderStatus.whyHeld == "locate"
        assert errors[0][1] == 404 and "locate the shares" in errors[0][2]
        await ack(ib, bars, HALF_HOUR)
        await until(lambda: trade.orderStatus.status == "Filled")
        [fill] = trade.fills
        assert fill.execution.side == "SLD"
        assert fill.execution.time == bars[HALF_HOUR + 12].time  # a minute after 10:00

    session(gateway, scenario)
    assert gateway.positions() == {"AAA": -100}


def test_a_trailing_stop_limit_that_gaps_through_its_limit_does_not_fill(gateways) -> None:
    frame = make_bars()
    close = frame["close"].iloc[HISTORY]
    gap = frame.index[HISTORY + 1]  # Friday opens 5 below Thursday's close
    frame.loc[gap, ["open", "high", "low", "close"]] = [
        close - 5,
        close - 4.7,
        close - 6,
        close - 5,
    ]
    gateway = gateways({"AAA": frame}, **DAY_ACK)

    def trailing(kind: str) -> Order:
        order = Order(action="SELL", totalQuantity=50, orderType=kind, auxPrice=2.0)
        order.trailStopPrice = close - 2.0
        if kind == "TRAIL LIMIT":
            order.lmtPriceOffset = 0.5  # a sell limit 0.5 under the stop once it triggers
        return order

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib, SESSION_BARS)
        ib.placeOrder(contract, MarketOrder("BUY", 100))
        trail = ib.placeOrder(contract, trailing("TRAIL"))
        trail_limit = ib.placeOrder(contract, trailing("TRAIL LIMIT"))
        await until(lambda: trail_limit.orderStatus.status == "PreSubmitted")
        await ack(ib, bars, SESSION_BARS)
        await until(lambda: trail.orderStatus.status == "Filled")
        assert trail.fills[0].execution.price == pytest.approx((close - 5) * (1 - SLIP))
        await asyncio.sleep(0.2)
        assert trail_limit.orderStatus.status == "PreSubmitted" and not trail_limit.fills

    session(gateway, scenario)
    assert gateway.positions() == {"AAA": 50}


def test_during_an_outage_orders_work_and_their_reports_come_at_the_restore(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, bars = await subscribe(ib, HALF_HOUR)
        trade = ib.placeOrder(contract, MarketOrder("BUY", 100))
        await until(lambda: trade.orderStatus.status == "Submitted")
        gateway.connectivity(1100)
        await until(lambda: errors)
        await ib.reqCurrentTimeAsync()
        await until(lambda: len(gateway.fills) == 1)  # filled at the exchange
        await asyncio.sleep(0.2)
        assert trade.orderStatus.status == "Submitted" and not trade.fills
        gateway.connectivity(1102)
        await until(lambda: trade.orderStatus.status == "Filled" and trade.fills)
        await until(lambda: trade.fills[0].commissionReport.commission > 0)

    session(gateway, scenario)

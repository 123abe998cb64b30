"""The IB-like gateway's market, as a real IB Gateway shows it to the real ib_async client.

Real-time bars are IB's 5-second bars on the exchange's clock, only during regular hours;
history ends with the bar still forming; error 162 tells pacing, permissions and "no data"
apart by its text; 354 refuses real-time bars without a subscription; connectivity codes
1100/1101/1102 arrive with the socket open. (Helpers and bars: ``tests/iblike.py``.)
"""

from __future__ import annotations

import asyncio
import math

import pytest
from ib_async import IB

from tests import iblike
from tests.iblike import (
    HISTORY,
    SESSION_BARS,
    ack,
    aggregate,
    at,
    make_bars,
    qualify,
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


# ------------------------------------------------------------------------ clock and hours


def test_contract_details_give_the_exchange_time_zone_hours_and_minimum_tick(gateways) -> None:
    gateway = gateways()

    async def scenario(ib: IB) -> None:
        [details] = await ib.reqContractDetailsAsync(await qualify(ib))
        assert details.timeZoneId == "US/Eastern"
        assert details.minTick == 0.01
        first = session_day(0).strftime("%Y%m%d")
        assert details.tradingHours.startswith(f"{first}:0930-{first}:1600;")
        assert details.liquidHours == details.tradingHours
        assert ":CLOSED" in details.tradingHours  # the weekend

    session(gateway, scenario)


def test_real_time_bars_are_5_second_bars_from_the_open_on_the_exchange_clock(gateways) -> None:
    gateway = gateways(**DAY_ACK)

    async def scenario(ib: IB) -> None:
        _, bars = await subscribe(ib, SESSION_BARS)
        day = session_day(0)
        assert bars[0].time == at(day, "09:30")
        gaps = {(b.time - a.time).total_seconds() for a, b in zip(bars, bars[1:], strict=False)}
        assert gaps == {5.0}
        assert bars[-1].time == at(day, "15:59:55")
        assert await ib.reqCurrentTimeAsync() == at(day, "16:00")

    session(gateway, scenario)


def test_the_clock_skips_the_night_and_the_weekend(gateways) -> None:
    gateway = gateways(**DAY_ACK)

    async def scenario(ib: IB) -> None:
        _, bars = await subscribe(ib, SESSION_BARS)
        thursday, friday, monday = (session_day(i) for i in range(3))
        assert [d.weekday() for d in (thursday, friday, monday)] == [3, 4, 0]
        await ack(ib, bars, SESSION_BARS)
        assert bars[SESSION_BARS - 1].time == at(thursday, "15:59:55")
        assert bars[SESSION_BARS].time == at(friday, "09:30")
        assert await ib.reqCurrentTimeAsync() == at(friday, "16:00")  # releases Monday
        await until(lambda: len(bars) == 3 * SESSION_BARS)
        assert bars[2 * SESSION_BARS].time == at(monday, "09:30")

    session(gateway, scenario)


def test_a_sessions_5_second_bars_add_up_to_its_daily_bar(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame}, **DAY_ACK)

    async def scenario(ib: IB) -> None:
        _, bars = await subscribe(ib, SESSION_BARS)
        row = frame.iloc[HISTORY]
        want = (row["open"], row["high"], row["low"], row["close"], row["volume"])
        assert aggregate(bars[:SESSION_BARS]) == pytest.approx(want)
        assert all(round(b.close * 100) == pytest.approx(b.close * 100) for b in bars)  # ticks

    session(gateway, scenario)


# ------------------------------------------------------------------------------ history


def test_history_with_no_end_time_ends_with_the_bar_still_forming(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame}, lockstep_seconds=1800)

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib, HALF_HOUR)  # 09:30-10:00 of the first session
        history = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day", "TRADES", True)
        *done, forming = history
        assert forming.date == session_day(0)
        o, h, lo, c, v = aggregate(bars)
        assert (forming.open, forming.high, forming.low, forming.close) == (o, h, lo, c)
        assert forming.volume == v == math.floor(1_000_000 * HALF_HOUR / SESSION_BARS)
        assert forming.volume < frame["volume"].iloc[HISTORY]
        assert done[-1].date == frame.index[HISTORY - 1].date()  # yesterday, complete
        assert done[-1].volume == frame["volume"].iloc[HISTORY - 1]

    session(gateway, scenario)


def test_after_the_close_the_days_bar_is_complete(gateways) -> None:
    frame = make_bars()
    gateway = gateways({"AAA": frame}, **DAY_ACK)

    async def scenario(ib: IB) -> None:
        contract, _ = await subscribe(ib, SESSION_BARS)
        [last] = await ib.reqHistoricalDataAsync(contract, "", "1 D", "1 day", "TRADES", True)
        row = frame.iloc[HISTORY]
        assert last.date == session_day(0)
        assert (last.open, last.high, last.low, last.close, last.volume) == tuple(row)

    session(gateway, scenario)


def test_intraday_history_is_on_the_exchange_clock_with_a_partial_last_bar(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800)

    async def scenario(ib: IB) -> None:
        contract, bars = await subscribe(ib, HALF_HOUR)
        await ack(ib, bars, HALF_HOUR)  # up to 10:30
        hours = await ib.reqHistoricalDataAsync(contract, "", "1 D", "1 hour", "TRADES", True)
        assert hours[-1].date == at(session_day(0), "09:30")  # 09:30-10:30, an hour
        assert hours[-1].volume == aggregate(bars)[4]
        minutes = await ib.reqHistoricalDataAsync(contract, "", "3600 S", "30 mins", "TRADES", True)
        assert [b.date for b in minutes[-2:]] == [at(session_day(0), t) for t in ("09:30", "10:00")]

    session(gateway, scenario)


def test_history_without_market_data_permissions_is_162_naming_the_exchange(gateways) -> None:
    gateway = gateways(no_permissions=frozenset({"AAA"}))

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract = await qualify(ib)
        bars = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day", "TRADES", True)
        assert len(bars) == 0
        assert [(code, text) for _, code, text in errors] == [
            (162, "Historical Market Data Service error message:No market data permissions "
                  "for NYSE STK"),
        ]  # fmt: skip

    session(gateway, scenario)


def test_history_of_a_symbol_without_data_is_162_hmds_query_returned_no_data(gateways) -> None:
    gateway = gateways(no_data=frozenset({"AAA"}))

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract = await qualify(ib)
        bars = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day", "TRADES", True)
        assert len(bars) == 0
        assert [(code, text) for _, code, text in errors] == [
            (162, "Historical Market Data Service error message:HMDS query returned no data: "
                  "AAA@SMART Trades"),
        ]  # fmt: skip

    session(gateway, scenario)


def test_an_identical_small_bar_request_within_15_seconds_is_a_pacing_violation(
    gateways,
) -> None:
    gateway = gateways(lockstep_seconds=1800)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, _ = await subscribe(ib, HALF_HOUR)
        args = (contract, "", "1800 S", "5 secs", "TRADES", True)
        first = await ib.reqHistoricalDataAsync(*args)
        second = await ib.reqHistoricalDataAsync(*args)
        daily = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day", "TRADES", True)
        again = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day", "TRADES", True)
        assert len(first) == HALF_HOUR and len(second) == 0
        assert len(daily) == len(again) > 0  # bars above 30 seconds are not paced
        assert [(code, text) for _, code, text in errors] == [
            (162, "Historical Market Data Service error message:Historical data request "
                  "pacing violation"),
        ]  # fmt: skip

    session(gateway, scenario)


# ----------------------------------------------------------------------- real-time errors


def test_real_time_bars_without_a_market_data_subscription_get_354(gateways) -> None:
    gateway = gateways(no_permissions=frozenset({"AAA"}))

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        bars = ib.reqRealTimeBars(await qualify(ib), 5, "TRADES", False)
        await until(lambda: errors)
        await asyncio.sleep(0.2)
        assert [(code, text) for _, code, text in errors] == [
            (354, "Requested market data is not subscribed.")
        ]
        assert len(bars) == 0

    session(gateway, scenario)


# ------------------------------------------------------------------------ connectivity


def test_1100_stops_market_data_with_the_socket_open_and_1102_resumes_it(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        _, bars = await subscribe(ib, HALF_HOUR)
        gateway.connectivity(1100)
        await until(lambda: errors)
        await ib.reqCurrentTimeAsync()  # the clock moves on; its bars are lost
        await asyncio.sleep(0.3)
        assert len(bars) == HALF_HOUR and ib.isConnected()
        gateway.connectivity(1102)
        await ack(ib, bars, HALF_HOUR)  # the same subscription delivers again
        assert bars[-1].time == at(session_day(0), "10:59:55")
        assert [(code, text) for _, code, text in errors] == [
            (1100, "Connectivity between IB and Trader Workstation has been lost."),
            (1102, "Connectivity between IB and Trader Workstation has been restored - "
                   "data maintained."),
        ]  # fmt: skip
        assert ib.isConnected()

    session(gateway, scenario)


def test_1101_drops_the_subscriptions_until_the_client_subscribes_again(gateways) -> None:
    gateway = gateways(lockstep_seconds=1800)

    async def scenario(ib: IB) -> None:
        errors = errors_of(ib)
        contract, bars = await subscribe(ib, HALF_HOUR)
        gateway.connectivity(1100)
        gateway.connectivity(1101)
        await until(lambda: len(errors) == 2)
        await ib.reqCurrentTimeAsync()
        await asyncio.sleep(0.3)
        assert len(bars) == HALF_HOUR, "data lost: the old subscription sends nothing"
        assert errors[1][1:] == (
            1101,
            "Connectivity between IB and Trader Workstation has been restored - data lost.",
        )
        again = ib.reqRealTimeBars(contract, 5, "TRADES", False)
        await ib.reqCurrentTimeAsync()
        await until(lambda: len(again) >= HALF_HOUR)
        assert ib.isConnected()

    session(gateway, scenario)

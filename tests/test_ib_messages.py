"""IB's error codes and texts mapped to what they mean (kerastrader.brokers.ib.messages).

The texts are IB's own, as TWS / IB Gateway send them."""

from __future__ import annotations

import pytest

from kerastrader.brokers.ib.messages import (
    PERMISSIONS_HINT,
    Meaning,
    classify,
    is_rejection,
    market_data_line,
)

HMDS = "Historical Market Data Service error message:"


@pytest.mark.parametrize(
    "text,meaning",
    [
        (HMDS + "Historical data request pacing violation", Meaning.PACING),
        (HMDS + "API historical data query cancelled: pacing violation", Meaning.PACING),
        (HMDS + "No market data permissions for NYSE STK", Meaning.NO_PERMISSIONS),
        (
            HMDS + "No market data permissions for ISLAND STK. Requested market data requires "
            "additional subscription for API. See link in 'Market Data Connections' dialog for "
            "more details.",
            Meaning.NO_PERMISSIONS,
        ),
        (HMDS + "HMDS query returned no data: ORCL@SMART Trades", Meaning.NO_DATA),
        (HMDS + "API historical data query cancelled: 28", Meaning.HISTORY_CANCELLED),
        (HMDS + "BEST queries are not supported for this contract", Meaning.HISTORY_ERROR),
    ],
)
def test_error_162_is_told_apart_by_its_text(text: str, meaning: Meaning) -> None:
    assert classify(162, text) is meaning


def test_connectivity_codes_are_lost_restored_with_data_lost_and_restored_with_data_kept():
    assert classify(1100) is Meaning.CONNECTIVITY_LOST
    assert classify(1101) is Meaning.RESTORED_DATA_LOST
    assert classify(1102) is Meaning.RESTORED_DATA_KEPT


@pytest.mark.parametrize("code", [354, 420, 10089, 10167, 10197])
def test_real_time_data_refusals_are_market_data_errors(code: int) -> None:
    assert classify(code, "Requested market data is not subscribed.") is Meaning.MARKET_DATA


@pytest.mark.parametrize("code", [201, 203, 383, 387, 163, 103])
def test_refused_orders_are_rejections(code: int) -> None:
    assert is_rejection(code)


def test_an_off_tick_price_rejects_a_new_order_but_not_a_modification() -> None:
    text = "The price does not conform to the minimum price variation for this contract."
    assert is_rejection(110, text)
    assert not is_rejection(110, text, modifying=True)


@pytest.mark.parametrize("code", [161, 10147, 10148])
def test_a_failed_cancel_is_not_a_rejection(code: int) -> None:
    assert classify(code) is Meaning.CANCEL_FAILED
    assert not is_rejection(code)


@pytest.mark.parametrize("code", [104, 105, 329])
def test_a_failed_modification_is_not_a_rejection(code: int) -> None:
    assert classify(code) is Meaning.MODIFY_FAILED
    assert not is_rejection(code)


def test_while_a_change_is_pending_even_201_is_about_the_change() -> None:
    assert not is_rejection(201, "Order rejected - reason: quantity < filled", modifying=True)


@pytest.mark.parametrize("code", [399, 404, 202])
def test_order_warnings_leave_the_order_working(code: int) -> None:
    assert classify(code) is Meaning.ORDER_WARNING
    assert not is_rejection(code)


def test_farm_notices_are_notices() -> None:
    assert classify(2104, "Market data farm connection is OK:usfarm") is Meaning.NOTICE


def test_a_permissions_refusal_line_names_the_contract_and_the_fix() -> None:
    line = market_data_line("AAA (STK, SMART, USD)", 162, HMDS + "No market data permissions "
                            "for NYSE STK")  # fmt: skip
    assert line.startswith("IB error 162 for AAA (STK, SMART, USD): ")
    assert PERMISSIONS_HINT in line and "share the live account's market data" in line
    assert "\n" not in line


def test_a_competing_session_line_says_to_log_the_live_account_out() -> None:
    line = market_data_line("AAA", 10197, "No market data during competing live session")
    assert "log it out" in line

"""Paper by default, real money only on request, and limits that stop a runaway strategy."""

from __future__ import annotations

import logging

import pytest

from kerastrader.brokers.safety import (
    LIVE_PORTS,
    PAPER_PORTS,
    DailyLossGuard,
    Limits,
    LiveTradingRefused,
    RedactingFilter,
    check_account,
    check_port,
    confirm_live,
)
from kerastrader.errors import KerastraderError


@pytest.mark.parametrize("port", PAPER_PORTS)
def test_paper_ports_are_allowed_without_live(port: int) -> None:
    check_port(port, live=False)


@pytest.mark.parametrize("port", LIVE_PORTS)
def test_live_ports_are_refused_without_live_naming_the_port_and_the_flag(port: int) -> None:
    with pytest.raises(LiveTradingRefused, match=rf"port {port}.*--live"):
        check_port(port, live=False)


@pytest.mark.parametrize("port", LIVE_PORTS)
def test_live_ports_are_allowed_with_live(port: int) -> None:
    check_port(port, live=True)


def test_refusing_live_trading_is_a_user_facing_error() -> None:
    assert issubclass(LiveTradingRefused, KerastraderError)


def test_a_paper_account_is_allowed_without_live() -> None:
    check_account("DU1234567", live=False)


@pytest.mark.parametrize("account", ["U1234567", "", "du1234567"])
def test_a_non_paper_account_is_refused_without_live(account: str) -> None:
    with pytest.raises(LiveTradingRefused, match="--live"):
        check_account(account, live=False)


def test_a_live_account_is_allowed_with_live_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="kerastrader.brokers.safety"):
        check_account("U1234567", live=True)
    assert "LIVE account" in caplog.text


@pytest.mark.parametrize(
    ("answer", "confirmed"),
    [
        ("U1234567", True),
        ("U1234567\n", True),  # what input() might leave behind
        ("u1234567", False),
        ("U123456", False),
        ("yes", False),
        ("", False),
    ],
)
def test_confirming_live_requires_typing_the_account_id_exactly(
    answer: str, confirmed: bool
) -> None:
    assert confirm_live(answer, "U1234567") is confirmed


def test_confirming_live_fails_when_the_account_is_unknown() -> None:
    assert confirm_live("", "") is False


def test_an_order_above_max_quantity_is_refused() -> None:
    limits = Limits(max_quantity=100)
    assert limits.check_order("AAPL", 100, 50.0, position=0) is None
    reason = limits.check_order("AAPL", -150, 50.0, position=0)
    assert reason is not None and "max_quantity 100" in reason and "150" in reason


def test_an_order_above_max_notional_is_refused() -> None:
    limits = Limits(max_notional=10_000)
    assert limits.check_order("AAPL", 100, 100.0, position=0) is None  # 10,000: at the limit
    reason = limits.check_order("AAPL", 101, 100.0, position=0)
    assert reason is not None and "max_notional 10,000" in reason and "10,100" in reason


def test_max_notional_refuses_an_order_whose_price_is_unknown() -> None:
    reason = Limits(max_notional=10_000).check_order("AAPL", 1, float("nan"), position=0)
    assert reason is not None and "unknown" in reason


def test_an_order_taking_the_position_above_max_position_is_refused() -> None:
    limits = Limits(max_position=500)
    assert limits.check_order("AAPL", 100, 50.0, position=400) is None  # 500: at the limit
    reason = limits.check_order("AAPL", 200, 50.0, position=400)
    assert reason is not None
    assert "resulting position 600" in reason and "max_position 500" in reason
    assert limits.check_order("AAPL", -1_100, 50.0, position=400) is not None  # short 700


def test_an_order_shrinking_a_position_above_max_position_is_allowed() -> None:
    assert Limits(max_position=500).check_order("AAPL", -200, 50.0, position=900) is None


def test_zero_limits_mean_no_limit() -> None:
    assert Limits().check_order("AAPL", 1e9, 1e6, position=1e9) is None


@pytest.mark.parametrize(
    "bad", [{"max_quantity": -1}, {"max_notional": float("nan")}, {"daily_loss_limit": 1.5}]
)
def test_nonsense_limits_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Limits(**bad)


def test_the_loss_guard_halts_once_when_the_day_loses_more_than_the_limit() -> None:
    guard = DailyLossGuard(limit=0.02)
    assert guard.update("2024-01-02T14:30Z", 100_000) is False  # the day's start
    assert guard.update("2024-01-02T15:00Z", 98_000) is False  # exactly -2%: not below
    assert guard.update("2024-01-02T16:00Z", 97_999) is True  # halt now
    assert guard.update("2024-01-02T17:00Z", 95_000) is False  # already halted: not again
    assert guard.halted("2024-01-02T18:00Z") is True


def test_the_loss_guard_resets_the_next_day() -> None:
    guard = DailyLossGuard(limit=0.02)
    guard.update("2024-01-02T14:30Z", 100_000)
    guard.update("2024-01-02T16:00Z", 90_000)

    assert guard.update("2024-01-03T14:30Z", 90_000) is False  # the new day starts at 90,000
    assert guard.halted("2024-01-03T14:30Z") is False
    assert guard.start_equity == 90_000
    assert guard.update("2024-01-03T16:00Z", 88_000) is True  # 2.2% below 90,000


def test_the_loss_guard_with_no_limit_never_halts() -> None:
    guard = DailyLossGuard(limit=0.0)
    guard.update("2024-01-02T14:30Z", 100_000)
    assert guard.update("2024-01-02T16:00Z", 1.0) is False
    assert guard.halted("2024-01-02T16:00Z") is False


def test_the_loss_guard_day_can_follow_the_exchange_timezone() -> None:
    guard = DailyLossGuard(limit=0.02, timezone="America/New_York")
    guard.update("2024-01-02T20:00Z", 100_000)  # 15:00 in New York
    # 01:00 UTC on the 3rd is still the 2nd in New York: the same day, so a halt.
    assert guard.update("2024-01-03T01:00Z", 97_000) is True


def test_redacting_filter_masks_a_password_in_formatted_log_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact = RedactingFilter(["hunter2", "DU1234567"])
    caplog.handler.addFilter(redact)
    log = logging.getLogger("kerastrader.test_safety")
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            log.info("connecting as %s with password %s", "DU1234567", "hunter2")
            log.info("login failed: password=hunter2")
    finally:
        caplog.handler.removeFilter(redact)

    assert "hunter2" not in caplog.text and "DU1234567" not in caplog.text
    assert caplog.messages == [
        "connecting as *** with password ***",
        "login failed: password=***",
    ]


def test_redacting_filter_masks_secrets_in_exception_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact = RedactingFilter(["s3cret-token"])
    caplog.handler.addFilter(redact)
    try:
        try:
            raise RuntimeError("token s3cret-token rejected")
        except RuntimeError:
            logging.getLogger("kerastrader.test_safety").exception("gateway login")
    finally:
        caplog.handler.removeFilter(redact)

    assert "s3cret-token" not in caplog.text
    assert "token *** rejected" in caplog.text

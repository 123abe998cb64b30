"""Which account a session trades, when an IB login manages several, and paper vs live.

Against the IB-like gateway with more than one managed account (``other_accounts``: their
values and positions are reported as IB reports them, through account-updates-multi and
reqPositions for every account): ``--account`` (``IBStore(account=...)``) chooses one and
the session sees only its values and positions; several accounts and no choice is refused
with one line; a financial-advisor paper login (``DF`` master and ``DU`` accounts) is paper;
a live ``U`` account is refused unless the session opted in with ``live``.
"""

from __future__ import annotations

import pytest

from kerastrader.brokers.ib.broker import PositionMismatch
from kerastrader.brokers.ib.store import IBStore
from kerastrader.brokers.safety import LiveTradingRefused
from kerastrader.errors import KerastraderError
from tests import iblike
from tests.iblike import HISTORY
from tests.ibsession import live_run

gateways = iblike.gateways  # the fixture

OURS = "DU1111111"
THEIRS = "DU2222222"
OTHER = {THEIRS: {"cash": 250_000.0, "positions": {"AAA": 100.0}}}
LAST_CLOSE = 100 + 0.5 * (HISTORY - 1)  # tests/iblike.py: the last history bar's close, 104.5


def _snapshot(gateway, **store_kwargs):
    host, port = gateway.address
    store = IBStore(host, port, client_id=1, **store_kwargs)
    try:
        store.start()
        return store.account, store.snapshot()
    finally:
        store.stop()


def test_account_chooses_one_of_two_and_sees_only_its_values_and_positions(gateways) -> None:
    gateway = gateways(account=OURS, other_accounts=OTHER, cash=100_000.0)
    account, snap = _snapshot(gateway, account=OURS)
    assert account == OURS
    assert snap["net_liquidation"] == 100_000.0
    assert snap["cash"] == 100_000.0
    assert snap["positions"] == {}  # the other account's 100 AAA are not ours
    account, snap = _snapshot(gateway, account=THEIRS)
    assert account == THEIRS
    assert snap["positions"] == {"AAA": 100.0}
    assert snap["cash"] == 250_000.0
    assert snap["net_liquidation"] == pytest.approx(250_000.0 + 100 * LAST_CLOSE)


def test_several_accounts_without_a_choice_are_refused_with_one_line(gateways) -> None:
    gateway = gateways(account=OURS, other_accounts=OTHER)
    with pytest.raises(KerastraderError) as refused:
        _snapshot(gateway)
    text = str(refused.value)
    assert "\n" not in text
    assert OURS in text and THEIRS in text and "--account" in text


def test_an_unknown_account_is_refused_naming_the_ones_the_login_has(gateways) -> None:
    gateway = gateways(account=OURS, other_accounts=OTHER)
    with pytest.raises(KerastraderError, match=f"DU9999999 is not among .*{OURS}"):
        _snapshot(gateway, account="DU9999999")


def test_a_session_on_the_other_account_stops_on_its_position(gateways, tmp_path) -> None:
    """The positions the broker checks are the chosen account's: 100 AAA there, none in the
    journal, so the session stops (the stated rule) instead of trading."""
    gateway = gateways(account=OURS, other_accounts=OTHER)
    mismatch = f"AAA: the journal holds 0, .*{THEIRS} holds 100"
    with pytest.raises(PositionMismatch, match=mismatch):
        live_run(gateway, tmp_path / "journal.sqlite", daily=True,
                 store_kwargs={"account": THEIRS})  # fmt: skip


def test_a_financial_advisor_paper_login_is_paper_and_trades_its_du_account(gateways) -> None:
    gateway = gateways(account=OURS, other_accounts={"DF1111110": {"cash": 0.0}})
    assert gateway.managed_accounts() == f"DF1111110,{OURS}"  # the master first, as IB lists
    account, snap = _snapshot(gateway)  # no --live, no --account: its one DU account
    assert account == OURS
    assert snap["net_liquidation"] == 100_000.0


def test_the_advisor_master_is_not_a_session_account(gateways) -> None:
    gateway = gateways(account=OURS, other_accounts={"DF1111110": {"cash": 0.0}})
    master = f"DF1111110 is the financial-advisor master.*{OURS}"
    with pytest.raises(KerastraderError, match=master):
        _snapshot(gateway, account="DF1111110")


def test_a_live_account_is_refused_without_the_opt_in(gateways) -> None:
    gateway = gateways(account="U1234567")
    with pytest.raises(LiveTradingRefused, match="U1234567 is not an Interactive Brokers paper"):
        _snapshot(gateway)
    account, _ = _snapshot(gateway, live=True)  # --live (the CLI also asks to type the id)
    assert account == "U1234567"

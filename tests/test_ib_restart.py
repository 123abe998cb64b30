"""A restarted session loses nothing: the bracket IB still works from yesterday is adopted.

Against the IB-like gateway (fills reported as orderStatus, execDetails, then the commission
report later): session 1 buys with a bracket on day 1 and stops mid-day while the stop and
the take-profit work at IB; session 2 starts with the same journal (same run) and client id, adopts
both legs, and the take-profit's fill on day 2 changes its position and cash. Bars:
``tests/iblike.py`` (a steady rise; day 1's high stays below the take-profit, day 2's not).
"""

from __future__ import annotations

import backtrader as bt
import pytest

from kerastrader.brokers.ib.broker import IBBroker
from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from kerastrader.brokers.journal import Journal
from tests.iblike import HISTORY, make_bars
from tests.ibsession import live_run

CASH = 100_000.0


class Bracket(bt.Strategy):
    """Session 1: a bracket on the third live bar, then stop after the sixth (mid-day 1)."""

    params = (("first_live", None), ("bracket", True))

    def __init__(self) -> None:
        self.live = 0

    def next(self) -> None:
        if self.data.datetime.date(0) < self.p.first_live:
            return
        self.live += 1
        if self.p.bracket and self.live == 3:
            price = self.data.close[0]
            self.buy_bracket(size=10, exectype=bt.Order.Market, stopprice=price - 5,
                             limitprice=106.3)  # fmt: skip
        if self.p.bracket and self.live == 6:
            self.env.runstop()


def _session(gateway: SimulatedGateway, path, bracket: bool) -> tuple[IBBroker, Journal]:
    first = make_bars().index[HISTORY].date()
    live = live_run(gateway, path, Bracket, broker_kwargs={"cash": CASH},
                    strategy_kwargs={"first_live": first, "bracket": bracket})  # fmt: skip
    return live.broker, live.journal


def test_a_restart_adopts_the_working_bracket_and_applies_its_fill_the_next_day(
    tmp_path,
) -> None:
    gateway = SimulatedGateway({"AAA": make_bars(HISTORY + 2)}, history=HISTORY,
                               ib=IBLike(lockstep_seconds=1800))  # fmt: skip
    gateway.start()
    try:
        first, journal = _session(gateway, tmp_path / "journal.sqlite", bracket=True)
        assert first.positions[first.p.datas[0]].size == 10
        working = [o for o in journal.open_orders() if not o["dry_run"]]
        assert len(working) == 2  # the stop and the take-profit work on at IB
        run_id = journal.run_id
        journal.close()
        second, journal = _session(gateway, tmp_path / "journal.sqlite", bracket=False)
    finally:
        gateway.stop()
    assert journal.run_id == run_id
    assert set(second.adopted) == {o["ref"] for o in working}
    data = second.p.datas[0]
    assert second.positions[data].size == 0  # the take-profit filled on day 2
    assert journal.positions() == {}
    fills = journal.fills()
    assert [f["shares"] for f in fills] == [10.0, -10.0]
    assert all(f["commission"] is not None for f in fills)  # each paired with its report
    assert fills[1]["price"] == pytest.approx(106.3)
    # cash from the live events equals the journal's arithmetic from the same capital
    assert second.cash == pytest.approx(journal.cash(CASH))
    assert journal.cash(CASH) == pytest.approx(
        CASH - sum(f["shares"] * f["price"] + f["commission"] for f in fills)
    )

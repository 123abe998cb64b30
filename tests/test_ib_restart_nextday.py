"""A session restarted the next day: yesterday's fill from the journal, the bracket adopted.

Against the IB-like gateway (``reqExecutions`` answers for the current exchange day only, as
IB's does): session 1 buys 10 shares with a bracket at 11:00 on day 1, its entry fills at
once, and the process stops at 12:30. IB's clock runs on overnight with nobody connected
(``SimulatedGateway.run_clock``) to 10:00 on day 2. Session 2 starts with the same journal:
IB no longer reports day 1's execution, so the position comes from the journal; the stop and
the take-profit IB still works are adopted, and when the take-profit fills on day 2 the
position and cash are what a hand computation says. Bars: ``tests/iblike.py``.
"""

from __future__ import annotations

import datetime as dt

import backtrader as bt
import pytest

from kerastrader.brokers.ib.simulator import SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from tests.iblike import HISTORY, NEW_YORK, at, make_bars, session, session_day
from tests.ibsession import live_run

CASH = 100_000.0
TAKE_PROFIT = 106.3  # above day 1's high (106), below day 2's (106.5)
# By hand (tests/iblike.py): day 1 is row 10 (open 104.8, low 103.8, high 106, close 105). Its
# 5-second path runs from the open down to the low at piece 1560 (of 4680), so the 11:00:00
# bar (piece 1080) opens at 104.8 - 1.0 * 1080 / 1560 = 104.1077, 104.11 on the cent grid.
# The market entry fills there, slipped up 5 bps; commissions are 0.1 % of the value.
ENTRY = 104.11 * 1.0005  # 104.162055
ENTRY_COMMISSION = 10 * 104.162055 * 0.001  # 1.04162055
EXIT_COMMISSION = 10 * TAKE_PROFIT * 0.001  # 1.063
CASH_AFTER_ENTRY = 98_957.33782945  # 100000 - 1041.62055 - 1.04162055
CASH_AFTER_EXIT = 100_019.27482945  # + 1063 - 1.063


class Bracket(bt.Strategy):
    """Session 1: a bracket on the 11:00 bar, then stop at 12:30. Session 2: watches."""

    params = (("first_live", None), ("bracket", True))

    def __init__(self) -> None:
        self.live = 0
        self.at_start: tuple[float, float] | None = None  # (position, cash) at the first bar

    def next(self) -> None:
        if self.data.datetime.date(0) < self.p.first_live:
            return
        if self.at_start is None:
            self.at_start = (self.position.size, self.broker.getcash())
        self.live += 1
        if self.p.bracket and self.live == 3:
            price = self.data.close[0]
            self.buy_bracket(size=10, exectype=bt.Order.Market, stopprice=price - 5,
                             limitprice=TAKE_PROFIT)  # fmt: skip
        if self.p.bracket and self.live == 6:
            self.env.runstop()


def _session(gateway: SimulatedGateway, path, bracket: bool, first_live: dt.date):
    live = live_run(gateway, path, Bracket, broker_kwargs={"cash": CASH},
                    strategy_kwargs={"first_live": first_live, "bracket": bracket})  # fmt: skip
    return live.strategy, live.broker, live.journal


async def _executions(ib) -> list:
    return await ib.reqExecutionsAsync()


def test_a_next_day_restart_takes_yesterdays_fill_from_the_journal_and_adopts_the_bracket(
    tmp_path,
) -> None:
    day1, day2 = session_day(0), session_day(1)
    gateway = SimulatedGateway({"AAA": make_bars(HISTORY + 2)}, history=HISTORY,
                               ib=IBLike(lockstep_seconds=1800))  # fmt: skip
    gateway.start()
    try:
        _, first, journal = _session(gateway, tmp_path / "journal.sqlite", True, day1)
        assert journal.positions() == {"AAA": 10.0}
        working = {o["ref"] for o in journal.open_orders() if not o["dry_run"]}
        assert len(working) == 2  # the stop and the take-profit work on at IB
        journal.close()
        assert len(session(gateway, _executions)) == 1  # still day 1: IB reports the entry
        gateway.run_clock(at(day2, "10:00").timestamp())  # overnight, nobody connected
        assert session(gateway, _executions) == []  # day 2: IB no longer reports it
        assert gateway.positions() == {"AAA": 10.0}  # the legs have not filled yet
        strategy, second, journal = _session(gateway, tmp_path / "journal.sqlite", False, day2)
    finally:
        gateway.stop()
    assert set(second.adopted) == working
    # session 2 started from the journal's day-1 fill: 10 shares, the entry's cash
    assert strategy.at_start[0] == 10.0
    assert strategy.at_start[1] == pytest.approx(CASH_AFTER_ENTRY, abs=0.005)
    fills = journal.fills()
    assert [f["shares"] for f in fills] == [10.0, -10.0]
    assert [f["price"] for f in fills] == pytest.approx([ENTRY, TAKE_PROFIT], abs=1e-9)
    assert [f["commission"] for f in fills] == pytest.approx(
        [ENTRY_COMMISSION, EXIT_COMMISSION], abs=1e-9
    )
    exit_day = dt.datetime.fromisoformat(fills[1]["time"]).astimezone(NEW_YORK).date()
    assert exit_day == day2
    assert second.getposition(second.p.datas[0]).size == 0
    assert round(second.getcash(), 2) == round(CASH_AFTER_EXIT, 2)
    assert round(journal.cash(CASH), 2) == round(CASH_AFTER_EXIT, 2)

"""A daily strategy live through IB: bars of the model's own timeframe on the exchange clock.

Against the simulated gateway in its IB-like mode (5-second real-time bars through a 09:30-
16:00 US/Eastern session per file bar, daily history whose last bar may still be forming,
orders after the close waiting for the open): the feed builds one daily bar per session from
the 5-second bars, the strategy decides once per day at the close, and its market orders fill
at the next session's open, as a backtest of the same daily bars fills them.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import backtrader as bt
import pandas as pd
import pytest

from kerastrader.brokers.costs import configure_broker
from kerastrader.brokers.ib.feed import history_request
from kerastrader.brokers.ib.hours import ExchangeHours, parse_hours
from kerastrader.brokers.ib.simulator import DEFAULT_BROKER, SimulatedGateway
from kerastrader.brokers.ib.simulator.scenarios import IBLike
from tests.iblike import HISTORY, make_bars
from tests.ibsession import live_run

NEW_YORK = ZoneInfo("US/Eastern")
LIVE_DAYS = 4
PLAN = {0: 10, 2: -10, 3: 5}  # live day -> shares to buy (+) or sell (-) at its close


class Daily(bt.Strategy):
    """Trades PLAN on the live days; counts its decisions per date."""

    params = (("first_live", None),)

    def __init__(self) -> None:
        self.decisions: dict[dt.date, int] = {}
        self.fills: list[tuple[dt.date, float, float]] = []

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            when = bt.num2date(order.executed.dt).date()
            self.fills.append((when, order.executed.size, round(order.executed.price, 6)))

    def next(self) -> None:
        day = self.data.datetime.date(0)
        if day < self.p.first_live:
            return  # warm-up bars
        self.decisions[day] = self.decisions.get(day, 0) + 1
        size = PLAN.get(len(self.decisions) - 1)
        if size and self.decisions[day] == 1:
            (self.buy if size > 0 else self.sell)(size=abs(size))


def _backtest(frame: pd.DataFrame, first_live: dt.date) -> Daily:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="AAA")
    configure_broker(cerebro, DEFAULT_BROKER)
    cerebro.addstrategy(Daily, first_live=first_live)
    return cerebro.run()[0]


def test_a_daily_session_decides_once_per_day_and_fills_as_its_backtest(tmp_path) -> None:
    frame = make_bars(HISTORY + LIVE_DAYS)
    first_live = frame.index[HISTORY].date()
    gateway = SimulatedGateway({"AAA": frame}, history=HISTORY,
                               ib=IBLike(lockstep_seconds=86_400))  # fmt: skip
    gateway.start()
    try:
        ran = live_run(gateway, tmp_path / "journal.sqlite", Daily, daily=True,
                       strategy_kwargs={"first_live": first_live})  # fmt: skip
    finally:
        gateway.stop()
    live, journal = ran.strategy, ran.journal
    days = [d.date() for d in frame.index[HISTORY:]]
    assert live.decisions == dict.fromkeys(days, 1)  # one decision per session, at its close
    bars = journal.bars("AAA")
    session = bars[bars.index.date >= first_live]
    expected = frame.iloc[HISTORY:]
    assert list(session.index.date) == days  # dated as the daily files are: the session date
    assert session[["open", "high", "low", "close", "volume"]].to_numpy() == pytest.approx(
        expected[["open", "high", "low", "close", "volume"]].to_numpy()
    )  # the 5-second bars add up to the file's daily bar
    backtest = _backtest(frame, first_live)
    assert backtest.decisions == live.decisions
    assert live.fills == backtest.fills  # the next session's open, with the same slippage
    assert len(live.fills) == 2  # the last day's order has no next session to fill in
    fills = journal.fills()
    opens = [dt.datetime.fromisoformat(f["time"]).astimezone(NEW_YORK) for f in fills]
    assert [t.strftime("%H:%M") for t in opens] == ["09:30", "09:30"]


def test_ib_hours_in_both_layouts_and_bar_periods_on_the_exchange_clock() -> None:
    current = "20240721:CLOSED;20240722:0930-20240722:1600;20240723:0930-20240723:1600"
    older = "20090507:0930-1600;20090508:CLOSED"
    assert len(parse_hours(current, NEW_YORK)) == 2
    [(a, b)] = parse_hours(older, NEW_YORK)
    assert b - a == 6.5 * 3600
    hours = ExchangeHours(NEW_YORK, parse_hours(current, NEW_YORK))
    t = dt.datetime(2024, 7, 22, 15, 59, 55, tzinfo=NEW_YORK).timestamp()
    day = hours.period(t, 86_400)
    assert day.end == t + 5  # the daily bar closes at the session's close, not at midnight
    assert day.stamp == dt.datetime(2024, 7, 22, tzinfo=dt.UTC).timestamp()
    hour = hours.period(t, 3600)  # hours cut from the 09:30 open; the last one at the close
    assert (hour.start, hour.end) == (t + 5 - 1800, t + 5)
    later = dt.datetime(2024, 7, 25, 10, 0, tzinfo=NEW_YORK).timestamp()  # past IB's list
    assert hours.period(later, 86_400).end == later + 6 * 3600
    # history durations count sessions, not calendar hours: 100 hourly RTH bars at 6 whole
    # hours a session are 17 sessions, 31 calendar days with weekends and holidays
    assert history_request(100, 3600, 6.5 * 3600) == ("31 D", "1 hour")
    assert history_request(20, 86_400)[1] == "1 day"

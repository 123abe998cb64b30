"""make_feed: validated bars reach a real Cerebro run intact and under their name."""

from __future__ import annotations

import datetime as dt

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.loader import load_csv
from tests.conftest import random_walk_bars, shared_file


class Record(bt.Strategy):
    """Every bar of every feed as Backtrader sees it."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple]] = {d._name: [] for d in self.datas}

    def next(self) -> None:
        for d in self.datas:
            self.seen[d._name].append(
                (
                    d.datetime.datetime(0),
                    d.open[0],
                    d.high[0],
                    d.low[0],
                    d.close[0],
                    d.volume[0],
                    d.openinterest[0],
                )
            )


def run(*feeds: bt.feeds.PandasData) -> Record:
    cerebro = bt.Cerebro(stdstats=False)
    for feed in feeds:
        cerebro.adddata(feed)
    cerebro.addstrategy(Record)
    return cerebro.run()[0]


def as_rows(bars: pd.DataFrame) -> list[tuple]:
    cols = ["open", "high", "low", "close", "volume"]
    return [
        (t.to_pydatetime(), *v)
        for t, v in zip(bars.index, bars[cols].to_numpy().tolist(), strict=True)
    ]


@pytest.fixture(scope="module")
def orcl_2014(orcl: pd.DataFrame) -> pd.DataFrame:
    return orcl.loc["2014"]


def test_every_real_bar_reaches_backtrader_unchanged_and_named(orcl_2014):
    strategy = run(make_feed(orcl_2014, "ORCL"))
    assert strategy.data._name == "ORCL"
    seen = strategy.seen["ORCL"]
    assert [s[:6] for s in seen] == as_rows(orcl_2014)


def test_open_interest_is_absent_not_zero(orcl_2014):
    seen = run(make_feed(orcl_2014.iloc[:5], "ORCL")).seen["ORCL"]
    assert all(np.isnan(s[6]) for s in seen)


def test_fromdate_and_todate_are_forwarded(orcl_2014):
    feed = make_feed(
        orcl_2014, "ORCL", fromdate=dt.datetime(2014, 6, 2), todate=dt.datetime(2014, 6, 30)
    )
    seen = run(feed).seen["ORCL"]
    assert seen[0][0] == dt.datetime(2014, 6, 2) and seen[-1][0] == dt.datetime(2014, 6, 30)
    assert len(seen) == len(orcl_2014.loc["2014-06-02":"2014-06-30"])


def test_two_feeds_keep_their_own_names_and_bars():
    a = random_walk_bars(40, seed=1)
    b = random_walk_bars(40, seed=2)
    strategy = run(make_feed(a, "AAA"), make_feed(b, "BBB"))
    assert [d._name for d in strategy.datas] == ["AAA", "BBB"]
    assert strategy.getdatabyname("BBB") is strategy.datas[1]
    assert [s[:6] for s in strategy.seen["AAA"]] == as_rows(a)
    assert [s[:6] for s in strategy.seen["BBB"]] == as_rows(b)


def test_a_tz_aware_frame_enters_backtrader_as_naive_utc():
    bars = random_walk_bars(3, seed=4)
    bars.index = (bars.index + pd.Timedelta("9h30min")).tz_localize("America/New_York")
    seen = run(make_feed(bars, "NY")).seen["NY"]
    expected = bars.index.tz_convert("UTC").tz_localize(None)
    assert [s[0] for s in seen] == [t.to_pydatetime() for t in expected]


def test_intraday_bars_keep_their_time_of_day():
    bars = load_csv(shared_file("2006-min-005.csv")).iloc[:200]
    seen = run(make_feed(bars, "FUT")).seen["FUT"]
    assert [s[:6] for s in seen] == as_rows(bars)

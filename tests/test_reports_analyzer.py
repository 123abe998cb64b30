"""PortfolioAnalyzer against real Backtrader runs: what it records is what the broker did."""

from __future__ import annotations

import datetime as dt

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from kerastrader.reports.analyzer import PortfolioAnalyzer
from tests.conftest import random_walk_bars

COMMISSION = 0.001
CASH = 100_000.0
PLAN = {20: 0.5, 60: 0.0, 100: 0.8}  # bar number -> target fraction of the portfolio


class Plan(bt.Strategy):
    """Targets fixed fractions on fixed bars and keeps its own record of every execution."""

    params = (("plan", PLAN),)

    def __init__(self) -> None:
        self.executions: list[dict] = []
        self._seen: dict[int, float] = {}

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Partial, order.Completed):
            done = order.executed.size
            self.executions.append(
                {
                    "when": order.data.datetime.datetime(0),
                    "symbol": order.data._name,
                    "amount": done - self._seen.get(order.ref, 0.0),
                    "price": order.executed.exbits[-1].price,
                    "commission": order.executed.exbits[-1].closedcomm
                    + order.executed.exbits[-1].openedcomm,
                }
            )
            self._seen[order.ref] = done

    def next(self) -> None:
        for data in self.datas:
            target = self.p.plan.get(len(data))
            if target is not None:
                self.order_target_percent(data=data, target=target / len(self.datas))


def backtest(
    frames: dict[str, pd.DataFrame],
    plan: dict | None = None,
    start: object = None,
    runonce: bool = True,
    filler: object = None,
    **feed_kwargs: object,
) -> tuple[Plan, dict]:
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for name, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame, name=name, **feed_kwargs))
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=COMMISSION)
    if filler is not None:
        cerebro.broker.set_filler(filler)
    cerebro.addstrategy(Plan, plan=PLAN if plan is None else plan)
    cerebro.addanalyzer(PortfolioAnalyzer, _name="pf", start=start)
    strategy = cerebro.run()[0]
    return strategy, strategy.analyzers.pf.get_analysis()


@pytest.fixture(scope="module")
def aaa() -> pd.DataFrame:
    return random_walk_bars(300, seed=0)


@pytest.fixture(scope="module")
def one_feed(aaa):
    return backtest({"AAA": aaa})


def test_returns_compound_to_the_final_broker_value(one_feed):
    strategy, a = one_feed
    final = a["start_value"] * np.prod(1.0 + a["returns"].to_numpy())
    assert final == pytest.approx(strategy.broker.getvalue(), rel=1e-9)
    assert a["start_value"] == CASH and a["returns"].name == "strategy"
    assert len(a["returns"]) == 300


def test_positions_have_a_column_per_feed_plus_cash_summing_to_the_value(aaa):
    _, a = backtest({"AAA": aaa, "BBB": random_walk_bars(300, seed=1)})
    positions = a["positions"]
    assert list(positions.columns) == ["AAA", "BBB", "cash"]
    assert (positions[["AAA", "BBB"]] > 0).any().all()  # both feeds were held at some point
    np.testing.assert_allclose(positions.sum(axis=1), a["values"], rtol=1e-12)


def test_transactions_are_the_executed_orders(one_feed):
    strategy, a = one_feed
    txns = a["transactions"]
    assert list(txns.columns) == ["amount", "price", "symbol", "commission"]
    expected = pd.DataFrame(strategy.executions)
    assert len(txns) == len(expected) == 3
    assert list(np.sign(txns["amount"])) == [1, -1, 1]
    np.testing.assert_allclose(txns["amount"], expected["amount"])
    np.testing.assert_allclose(txns["price"], expected["price"])
    np.testing.assert_allclose(txns["commission"], expected["commission"])
    np.testing.assert_allclose(txns["commission"], txns["amount"].abs() * txns["price"] * 0.001)
    assert list(txns["symbol"]) == ["AAA"] * 3
    assert list(txns.index.tz_localize(None)) == list(expected["when"])


def test_market_orders_fill_at_the_next_bar_open(one_feed, aaa):
    _, a = one_feed
    for when, row in a["transactions"].iterrows():
        assert row["price"] == pytest.approx(aaa.loc[when.tz_localize(None), "open"])
    assert list(a["transactions"].index) == [
        pd.Timestamp(aaa.index[i], tz="UTC") for i in (20, 60, 100)
    ]


def test_closed_trades_are_counted(one_feed):
    _, a = one_feed
    assert a["trades"] == 1  # bought at 20, sold at 60; the buy at 100 is still open


def test_partial_fills_are_one_row_each_with_that_fills_amount(aaa):
    strategy, a = backtest(
        {"AAA": aaa}, plan={20: 0.5}, filler=bt.broker.fillers.FixedSize(size=500)
    )
    txns = a["transactions"]
    assert len(txns) > 1 and (txns["amount"] <= 500).all()
    np.testing.assert_allclose(txns["amount"], pd.DataFrame(strategy.executions)["amount"])
    assert txns["amount"].sum() == strategy.getposition(strategy.data).size
    np.testing.assert_allclose(txns["commission"], txns["amount"] * txns["price"] * COMMISSION)


def test_bars_before_start_are_warm_up_and_the_first_return_uses_the_value_before(one_feed, aaa):
    _, full = one_feed
    start = aaa.index[150].date()
    strategy, late = backtest({"AAA": aaa}, start=start)
    assert late["returns"].index[0] == pd.Timestamp(start, tz="UTC")
    assert len(late["returns"]) == 150 and len(late["positions"]) == 150
    assert late["start_value"] == pytest.approx(full["values"].iloc[149], rel=1e-12)
    np.testing.assert_allclose(late["returns"].to_numpy(), full["returns"].iloc[150:].to_numpy())
    final = late["start_value"] * np.prod(1.0 + late["returns"].to_numpy())
    assert final == pytest.approx(strategy.broker.getvalue(), rel=1e-9)


def test_fills_before_start_are_kept(one_feed, aaa):
    _, full = one_feed
    _, late = backtest({"AAA": aaa}, start=aaa.index[80].date())
    pd.testing.assert_frame_equal(late["transactions"], full["transactions"])


def test_start_before_the_first_bar_measures_from_the_starting_cash(one_feed):
    _, full = one_feed
    _, a = backtest({"AAA": random_walk_bars(300, seed=0)}, start="1999-01-01")
    assert a["start_value"] == CASH
    pd.testing.assert_series_equal(a["returns"], full["returns"])


def test_every_index_is_utc(one_feed):
    _, a = one_feed
    for key in ("returns", "values", "positions", "transactions"):
        assert str(a[key].index.tz) == "UTC", key


def test_daily_bars_stamped_with_a_time_are_dated_at_midnight(aaa):
    stamped = aaa.copy()
    stamped.index = stamped.index + pd.Timedelta(hours=16)  # a session close, as some feeds do
    _, a = backtest({"AAA": stamped})
    for key in ("returns", "positions", "transactions"):
        index = a[key].index
        assert (index == index.normalize()).all(), key
    assert a["returns"].index[0] == pd.Timestamp(aaa.index[0], tz="UTC")


def test_intraday_bars_give_daily_returns_and_fills_keep_their_time_of_day(aaa):
    hourly = aaa.iloc[:100].copy()
    hourly.index = pd.date_range("2000-01-03 09:00", periods=100, freq="h")
    strat, a = backtest(
        {"AAA": hourly}, plan={20: 0.5}, timeframe=bt.TimeFrame.Minutes, compression=60
    )
    # pyfolio's unit is the day: one return per day, from each day's last bar.
    assert list(a["returns"].index) == list(
        pd.date_range("2000-01-03", periods=5, freq="D", tz="UTC")
    )
    growth = np.prod(1 + a["returns"].to_numpy())
    assert a["start_value"] * growth == pytest.approx(strat.broker.getvalue(), rel=1e-9)
    assert a["transactions"].index[0] == pd.Timestamp("2000-01-03 09:00", tz="UTC") + pd.Timedelta(
        hours=20
    )


def test_no_fills_give_an_empty_transactions_frame_in_pyfolio_layout(aaa):
    _, a = backtest({"AAA": aaa}, plan={})
    txns = a["transactions"]
    assert txns.empty and list(txns.columns) == ["amount", "price", "symbol", "commission"]
    assert isinstance(txns.index, pd.DatetimeIndex) and str(txns.index.tz) == "UTC"
    assert a["trades"] == 0 and (a["returns"] == 0).all()


@pytest.mark.parametrize("runonce", [True, False])
def test_a_feed_that_starts_later_is_valued_at_zero_until_it_trades(aaa, runonce):
    late = random_walk_bars(300, seed=1).iloc[30:]
    strategy, a = backtest({"AAA": aaa, "BBB": late}, runonce=runonce)
    positions = a["positions"]
    assert not positions.isna().any().any()
    assert (positions["BBB"].loc[: pd.Timestamp(late.index[0], tz="UTC")] == 0).all()
    np.testing.assert_allclose(positions.sum(axis=1), a["values"], rtol=1e-12)
    final = a["start_value"] * np.prod(1.0 + a["returns"].to_numpy())
    assert final == pytest.approx(strategy.broker.getvalue(), rel=1e-9)


def test_start_accepts_a_datetime(aaa):
    _, a = backtest({"AAA": aaa}, start=dt.datetime(2000, 6, 1, 12, 0))
    assert a["returns"].index[0] == pd.Timestamp("2000-06-01", tz="UTC")

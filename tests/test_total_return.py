"""Total return: dividends paid in cash on their ex-dates, splits applied, features and the
benchmark on the causal total-return series.

Expected values come from the raw CSV rows read with the csv module and a plain loop (the
dividend a Yahoo file implies: ``d_t = Close[t-1] * (1 - f[t-1] / f[t])`` with
``f = Adj Close / Close``, a step counted above 1e-4), never from kerastrader's own functions.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerastrader.brokers.costs import configure_broker
from kerastrader.config import default_config
from kerastrader.feeds.actions import corporate_actions, with_actions
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.loader import load_csv
from kerastrader.models.features import FeatureSet
from kerastrader.runs.benchmark import BenchmarkSpec, benchmark_returns
from tests.conftest import random_walk_bars, shared_file

AGG_SLICE = Path(__file__).parent / "data" / "agg-2023-2024.csv"


def raw_rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [
            {"date": r["Date"], **{k: float(r[k]) for k in ("Open", "Close", "Adj Close")}}
            for r in csv.DictReader(f)
        ]


def dividends_by_hand(rows: list[dict[str, float]]) -> list[float]:
    out = [0.0]
    for prev, row in zip(rows, rows[1:], strict=False):
        f_prev = prev["Adj Close"] / prev["Close"]
        f_now = row["Adj Close"] / row["Close"]
        step = 1 - f_prev / f_now
        out.append(prev["Close"] * step if step > 1e-4 else 0.0)
    return out


def no_costs() -> dict:
    broker = dict(default_config()["broker"])
    broker.update(commission=0.0, slippage_bps=0.0)
    return broker


class BuyAndHold(bt.Strategy):
    params = (("shares", 0),)

    def __init__(self):
        self.sent = False

    def next(self):
        if not self.sent:
            self.buy(size=self.p.shares)  # fills at the next bar's open
            self.sent = True


def hold(path: Path, shares: int, returns: str = "total", broker: dict | None = None):
    bars, _ = with_actions(load_csv(path), returns)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars, "X"), name="X")
    configure_broker(cerebro, broker or no_costs())
    cerebro.addstrategy(BuyAndHold, shares=shares)
    cerebro.run()
    return cerebro.broker


def value_by_hand(path: Path, shares: int, cash: float = 100_000.0) -> float:
    rows = raw_rows(path)
    d = dividends_by_hand(rows)
    spent = shares * rows[1]["Open"]
    # The holder of record at the close before an ex-date gets its dividend: the position is
    # there from bar 1's open, so at the ex-dates of bars 2 onwards.
    received = sum(shares * d[t] for t in range(2, len(rows)))
    return cash - spent + received + shares * rows[-1]["Close"]


@pytest.mark.parametrize("name, shares", [("spy-daily.csv", 2000), ("agg-daily.csv", 900)])
def test_buy_and_hold_is_worth_shares_times_price_plus_dividends_received(name, shares):
    path = shared_file(name)
    broker = hold(path, shares)
    assert broker.getvalue() == pytest.approx(value_by_hand(path, shares), abs=0.005)


def test_buy_and_hold_on_the_shipped_agg_slice_receives_every_monthly_dividend():
    broker = hold(AGG_SLICE, 900)
    assert broker.getvalue() == pytest.approx(value_by_hand(AGG_SLICE, 900), abs=0.005)
    assert len(broker.dividends) == 23  # AGG pays monthly: 23 ex-dates after the first bar


def test_price_returns_receive_no_dividends():
    broker = hold(AGG_SLICE, 900, returns="price")
    rows = raw_rows(AGG_SLICE)
    expected = 100_000 - 900 * rows[1]["Open"] + 900 * rows[-1]["Close"]
    assert broker.getvalue() == pytest.approx(expected, abs=0.005)


def test_a_short_position_pays_the_dividend():
    class ShortAndHold(BuyAndHold):
        def next(self):
            if not self.sent:
                self.sell(size=self.p.shares)
                self.sent = True

    bars, _ = with_actions(load_csv(AGG_SLICE), "total")
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars, "X"), name="X")
    configure_broker(cerebro, no_costs())
    cerebro.addstrategy(ShortAndHold, shares=500)
    cerebro.run()
    rows = raw_rows(AGG_SLICE)
    paid = sum(500 * d for d in dividends_by_hand(rows)[2:])
    expected = 100_000 + 500 * rows[1]["Open"] - paid - 500 * rows[-1]["Close"]
    assert cerebro.broker.getvalue() == pytest.approx(expected, abs=0.005)


@pytest.mark.parametrize("name", ["spy-daily.csv", "agg-daily.csv"])
def test_total_return_benchmark_grows_as_adj_close_from_the_entry_open(name):
    path = shared_file(name)
    check_benchmark_against_adj_close(path)


def test_total_return_benchmark_on_the_shipped_slice_grows_as_adj_close():
    check_benchmark_against_adj_close(AGG_SLICE)


def check_benchmark_against_adj_close(path: Path) -> None:
    bars, _ = with_actions(load_csv(path), "total")
    spec = BenchmarkSpec({"X": 1.0}, "never", "total")
    r = benchmark_returns({"X": bars}, spec, bars.index[0], bars.index[-1])
    rows = raw_rows(path)
    entry = rows[1]["Open"] * rows[1]["Adj Close"] / rows[1]["Close"]  # the adjusted open
    growth = rows[-1]["Adj Close"] / entry
    assert r.iloc[0] == 0.0  # the decision day: nothing held yet
    assert np.prod(1 + r.to_numpy()) == pytest.approx(growth, rel=1e-9)
    day = [row["date"] for row in rows].index("2023-06-01") if path == AGG_SLICE else None
    if day is not None:  # an AGG ex-date: the benchmark's day is Adj Close's day
        adj = [row["Adj Close"] for row in rows]
        assert r.iloc[day] == pytest.approx(adj[day] / adj[day - 1] - 1, rel=1e-9)


def split_bars(ratio: float = 1.5, at: int = 10, n: int = 20) -> pd.DataFrame:
    """Flat raw prices at 90 that become 90 / ratio at ``at``, with a splits column."""
    idx = pd.bdate_range("2021-01-04", periods=n, name="datetime")
    price = np.where(np.arange(n) < at, 90.0, 90.0 / ratio)
    splits = np.where(np.arange(n) == at, ratio, 0.0)
    return pd.DataFrame({"open": price, "high": price, "low": price, "close": price,
                         "volume": 1e6, "splits": splits}, index=idx)  # fmt: skip


class Record(BuyAndHold):
    def __init__(self):
        super().__init__()
        self.values, self.sizes, self.cash = [], [], []

    def next(self):
        super().next()
        self.values.append(self.broker.getvalue())
        self.sizes.append(self.position.size)
        self.cash.append(self.broker.getcash())


def run_split(shares: int, ratio: float = 1.5):
    bars, note = with_actions(split_bars(ratio), "total")
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(bars, "X"), name="X")
    configure_broker(cerebro, no_costs())
    cerebro.addstrategy(Record, shares=shares)
    return cerebro.run()[0], note


def test_a_split_leaves_a_held_position_worth_the_same():
    strat, note = run_split(101)
    assert "1 splits applied" in note
    assert strat.values[9] == pytest.approx(100_000.0)
    assert strat.values[10] == pytest.approx(strat.values[9], abs=1e-9)
    assert strat.values[-1] == pytest.approx(100_000.0, abs=1e-9)


def test_a_split_multiplies_the_shares_and_pays_cash_for_the_fraction():
    strat, _ = run_split(101)
    assert strat.sizes[9] == 101
    assert strat.sizes[10] == 151  # 101 x 1.5 = 151.5: 151 shares and half a share in cash
    assert strat.cash[10] - strat.cash[9] == pytest.approx(0.5 * 60.0)


def test_a_splits_column_on_prices_already_split_adjusted_is_ignored():
    bars = random_walk_bars(30, seed=4)
    bars["splits"] = 0.0
    bars.iloc[12, bars.columns.get_loc("splits")] = 2.0  # the prices do not halve there
    actions, note = corporate_actions(bars)
    assert (actions["split"] == 1.0).all()
    assert "1 splits in the splits column ignored" in note


def test_an_ex_dividend_day_is_not_a_down_bar_to_the_features():
    bars, _ = with_actions(load_csv(AGG_SLICE), "total")
    features = FeatureSet(["logret_1"]).compute_frame(bars)["logret_1"]
    rows = raw_rows(AGG_SLICE)
    adj = [r["Adj Close"] for r in rows]
    close = [r["Close"] for r in rows]
    t = [r["date"] for r in rows].index("2023-06-01")  # ex-date: 0.258 paid
    assert features.iloc[t] == pytest.approx(math.log(adj[t] / adj[t - 1]), abs=1e-12)
    assert math.log(close[t] / close[t - 1]) < features.iloc[t] - 0.002  # the price drop


def test_a_file_without_adj_close_or_dividends_says_so():
    _, note = corporate_actions(random_walk_bars(10))
    assert note.startswith("no dividends or splits in the data")


def dividend_bars(n: int, seed: int) -> pd.DataFrame:
    bars = random_walk_bars(n, seed=seed)
    rng = np.random.default_rng(seed)
    bars["dividend"] = np.where(rng.random(n) < 0.05, bars["close"].shift(1) * 0.01, 0.0)
    bars["dividend"] = bars["dividend"].fillna(0.0)
    bars["split"] = 1.0
    return bars


@settings(max_examples=25, deadline=None)
@given(t=st.integers(min_value=60, max_value=180), seed=st.integers(0, 10_000),
       later=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=20))  # fmt: skip
def test_dividends_after_t_do_not_move_any_feature_at_or_before_t(t, seed, later):
    features = FeatureSet(["logret_1", "rsi_14", "bbp_20", "atr_14", "sma_dist_10",
                           "ema_dist_10", "volume_z_20"], memory=5)  # fmt: skip
    bars = dividend_bars(200, seed)
    before = features.compute(bars)
    changed = bars.copy()
    rows = np.arange(t + 1, min(t + 1 + len(later), len(bars)))
    changed.iloc[rows, changed.columns.get_loc("dividend")] = later[: len(rows)]
    after = features.compute(changed)
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])


def test_bar_by_bar_features_with_dividends_equal_the_full_history(tmp_path):
    features = FeatureSet(["logret_1", "rsi_14", "bbp_20", "sma_dist_10"], memory=5)
    bars = dividend_bars(200, seed=7)
    full = features.compute(bars)
    columns = {c: bars[c].to_numpy() for c in features.inputs}
    for t in range(features.lookback, 200, 17):
        last = features.compute_last({c: v[: t + 1] for c, v in columns.items()})
        np.testing.assert_allclose(last, full[t], rtol=1e-9, atol=1e-12)


class Predictions(bt.Strategy):
    params = (("model", None),)

    def __init__(self):
        from kerastrader.models.indicator import KerasIndicator

        self.pred = KerasIndicator(self.data, model=self.p.model)


def test_both_passes_predict_the_same_on_a_feed_with_dividends(trained):
    bars, _ = with_actions(load_csv(AGG_SLICE), "total")
    out = []
    for runonce in (True, False):
        cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
        cerebro.adddata(make_feed(bars, "AGG"), name="AGG")
        cerebro.addstrategy(Predictions, model=trained.loaded)
        strat = cerebro.run()[0]
        out.append(np.asarray(strat.pred.lines.prediction.array[: len(bars)]))
    assert np.isfinite(out[0]).sum() > 300
    np.testing.assert_allclose(out[0], out[1], atol=1e-5, equal_nan=True)


def test_resampling_keeps_the_dividends_and_splits_of_each_period():
    from kerastrader.feeds.resample import resample_bars

    bars = random_walk_bars(10, seed=1)  # 2000-01-03 .. 2000-01-14, two weeks
    bars["dividends"] = [0, 0.1, 0, 0, 0.2, 0, 0, 0, 0, 0]
    bars["splits"] = [0, 0, 0, 0, 0, 0, 2.0, 0, 0, 0]
    weekly = resample_bars(bars, "W-FRI")
    assert weekly["dividends"].tolist() == pytest.approx([0.3, 0.0])
    assert weekly["splits"].tolist() == [1.0, 2.0]

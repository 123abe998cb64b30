"""The analyzer records what the broker did; the writer turns it into the run's files."""

from __future__ import annotations

import datetime as dt
import json

import backtrader as bt
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from kerastrader.feeds.btfeed import make_feed
from kerastrader.reports.analyzer import PortfolioAnalyzer
from kerastrader.reports.writer import write_run_files
from tests.conftest import random_walk_bars


class Script(bt.Strategy):
    """Buys and sells on fixed bars: a deterministic trading pattern."""

    params = (("plan", {20: 0.5, 60: 0.0, 100: 0.8, 200: 0.0}),)

    def next(self):
        for data in self.datas:
            target = self.p.plan.get(len(data))
            if target is not None:
                self.order_target_percent(data=data, target=target / len(self.datas))


def run(n_feeds=1, plan=None, start=None, filler=None):
    cerebro = bt.Cerebro(stdstats=False)
    for i in range(n_feeds):
        cerebro.adddata(make_feed(random_walk_bars(300, seed=i), f"S{i}"))
    cerebro.broker.setcash(100_000.0)
    cerebro.broker.setcommission(commission=0.001)
    if filler is not None:
        cerebro.broker.set_filler(filler)
    cerebro.addstrategy(Script, **({"plan": plan} if plan is not None else {}))
    cerebro.addanalyzer(PortfolioAnalyzer, _name="pf", start=start)
    strat = cerebro.run()[0]
    return strat, strat.analyzers.pf.get_analysis()


def test_compounded_returns_reproduce_the_final_broker_value():
    strat, a = run()
    growth = np.prod(1 + a["returns"].to_numpy())
    assert a["start_value"] * growth == pytest.approx(strat.broker.getvalue(), rel=1e-9)


def test_positions_have_a_column_per_feed_plus_cash_summing_to_the_value():
    _, a = run(n_feeds=2)
    assert list(a["positions"].columns) == ["S0", "S1", "cash"]
    np.testing.assert_allclose(a["positions"].sum(axis=1), a["values"], rtol=1e-9)


def test_every_index_is_utc():
    _, a = run()
    for key in ("returns", "positions", "transactions", "values"):
        assert str(a[key].index.tz) == "UTC", key


def test_transactions_are_the_executed_fills_with_sign_price_and_commission():
    strat, a = run()
    txns = a["transactions"]
    assert list(txns.columns) == ["amount", "price", "symbol", "commission"]
    assert len(txns) == 4 and list(np.sign(txns["amount"])) == [1, -1, 1, -1]
    np.testing.assert_allclose(
        txns["commission"], txns["amount"].abs() * txns["price"] * 0.001, rtol=1e-9
    )
    # Each fill at the open of its bar (market orders fill at the next open).
    bars = random_walk_bars(300, seed=0)
    for when, row in txns.iterrows():
        assert row["price"] == pytest.approx(bars.loc[when.tz_localize(None), "open"])
    assert a["trades"] == 2


def test_partial_fills_are_one_row_each_and_add_up_to_the_order():
    strat, a = run(plan={20: 0.5}, filler=bt.broker.fillers.FixedSize(size=500))
    txns = a["transactions"]
    assert len(txns) > 1
    assert (txns["amount"] <= 500).all()
    assert txns.index.is_unique  # one partial execution per bar, each its own row
    assert txns["amount"].sum() == strat.getposition(strat.data).size


def test_warm_up_bars_before_start_are_not_recorded():
    bars = random_walk_bars(300, seed=0)
    start = bars.index[150].date()
    _, full = run()
    _, late = run(start=start)
    assert late["returns"].index[0].date() == start
    assert late["start_value"] == pytest.approx(full["values"].iloc[149])
    np.testing.assert_allclose(late["returns"].to_numpy(), full["returns"].iloc[150:].to_numpy())


def _write(tmp_path, a, figures=False, y=None):
    bench = a["returns"] * 0 + 0.0005
    bench.name = "benchmark"
    y_true = y_prob = None
    model = None
    if y is not None:
        rng = np.random.default_rng(0)
        y_true = rng.integers(0, 2, 200)
        y_prob = np.clip(0.5 + 0.1 * (y_true - 0.5) + rng.normal(0, 0.1, 200), 0, 1)
        model = {
            "accuracy": 0.6,
            "precision": 0.6,
            "recall": 0.6,
            "f1": 0.6,
            "roc_auc": 0.65,
            "n_test": 200,
            "test_start": "2000-01-03",
            "test_end": "2000-12-29",
            "confusion_matrix": [[60, 40], [40, 60]],
        }
    return write_run_files(
        tmp_path,
        returns=a["returns"],
        benchmark=bench,
        positions=a["positions"],
        transactions=a["transactions"],
        trades=a["trades"],
        start_value=a["start_value"],
        model=model,
        y_true=y_true,
        y_prob=y_prob,
        config_toml="[data]\nsymbol = 'S0'\n",
        title="Test <report>",
        symbol="S0",
        figures=figures,
    )


def test_a_strategy_that_never_trades_still_gets_a_report(tmp_path):
    _, a = run(plan={})
    metrics = _write(tmp_path, a, figures=True)
    assert metrics["run"]["trades"] == 0 and metrics["run"]["fills"] == 0
    assert (tmp_path / "transactions.csv").read_text().strip() == (
        "date,amount,price,symbol,commission"
    )
    assert "never traded" in (tmp_path / "report.html").read_text()


def test_run_files_have_the_promised_names_and_columns(tmp_path):
    _, a = run()
    _write(tmp_path, a)
    assert list(pd.read_csv(tmp_path / "returns.csv").columns) == ["date", "strategy", "benchmark"]
    assert list(pd.read_csv(tmp_path / "positions.csv").columns) == ["date", "S0", "cash"]
    assert list(pd.read_csv(tmp_path / "transactions.csv").columns) == [
        "date",
        "amount",
        "price",
        "symbol",
        "commission",
    ]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert {"alpha", "beta", "sharpe_ratio", "max_drawdown"} <= set(m["strategy"])
    assert m["run"]["final_value"] == pytest.approx(
        a["start_value"] * np.prod(1 + a["returns"].to_numpy()), rel=1e-12
    )


def test_report_is_self_contained_with_pyfolio_tables_and_no_leaks(tmp_path, capsys):
    _, a = run()
    _write(tmp_path, a, figures=True, y=True)
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 5
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "Test &lt;report&gt;" in page
    assert "Worst drawdown periods" in page  # a pyfolio table, captured as HTML
    assert "IPython.core.display" not in capsys.readouterr().out
    assert plt.get_fignums() == []


def test_start_date_parameter_accepts_a_date():
    _, a = run(start=dt.date(2000, 6, 1))
    assert a["returns"].index[0] >= pd.Timestamp("2000-06-01", tz="UTC")

"""The shipped four-asset book (SPY/AGG/XLE/XLF at 40/45/5/10, monthly, IB fixed commissions)
on the shared real data: every rebalance executes, the book earns total return, and it is
measured against its own strategic weights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kerastrader.cli import run_backtest_main
from tests.conftest import ROOT, shared_file
from tests.test_benchmark import strategic_by_hand

BOOK = {"SPY": 0.40, "AGG": 0.45, "XLE": 0.05, "XLF": 0.10}
TOLERANCE = 0.02  # resize band 1% + cash buffer 0.5% + a day's move against each other


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    for name in BOOK:
        shared_file(f"{name.lower()}-daily.csv")
    out = tmp_path_factory.mktemp("four") / "run"
    argv = [str(ROOT / "examples" / "four_asset.toml"), "--out", str(out), "-q",
            "--set", "training.epochs=1", "--set", "report.figures=false",
            "--set", "model.units=[4]", "--set", "benchmark.costs=false"]  # fmt: skip
    assert run_backtest_main(argv) == 0
    return out


def metrics(book) -> dict:
    return json.loads((book / "metrics.json").read_text())


def test_no_order_is_refused(book):
    assert metrics(book)["run"]["rejections"] == 0
    assert metrics(book)["run"]["fills"] > 50


def test_after_each_rebalance_every_weight_is_near_its_target(book):
    targets = pd.read_csv(book / "targets.csv")
    positions = pd.read_csv(book / "positions.csv", index_col="date")
    weights = positions.drop(columns="cash").div(positions.sum(axis=1), axis=0)
    days = list(weights.index)
    checked = 0
    for when, decided in targets.groupby("time"):
        day = days.index(when[:10])
        if day + 1 >= len(days):
            continue
        filled = weights.iloc[day + 1]  # the close of the day its orders filled at the open
        for sym, target in zip(decided["symbol"], decided["target"], strict=True):
            assert abs(filled[sym] - target) < TOLERANCE, (when, sym, filled[sym], target)
        checked += 1
    assert checked >= 90  # 97 monthly rebalances, 2017-01 .. 2025-01


def test_the_book_is_measured_against_its_strategic_weights_in_total_return(book):
    returns = pd.read_csv(book / "returns.csv", index_col="date")
    expected = strategic_by_hand(BOOK)  # a plain loop over the CSV rows
    np.testing.assert_allclose(returns["benchmark"].to_numpy(), expected, rtol=0, atol=1e-9)
    run = metrics(book)["run"]
    assert run["benchmark"].startswith("40% SPY, 45% AGG, 5% XLE, 10% XLF rebalanced monthly")
    assert (
        "40% SPY, 45% AGG, 5% XLE, 10% XLF rebalanced monthly" in (book / "report.html").read_text()
    )


def test_the_book_receives_its_dividends(book):
    run = metrics(book)["run"]
    assert run["returns"] == "total"
    # About 1.8% a year on ~100,000 over eight years: well over ten thousand.
    assert run["dividends"] > 10_000

"""Intraday bars go end to end: load with a time column, train, backtest, report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kerastrader.cli import run_backtest_main
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def intraday_run(tmp_path_factory):
    """Through run_backtest.py's own entry point, as a user runs it."""
    path = shared_file("2006-min-005.csv")
    out = tmp_path_factory.mktemp("intraday") / "run"
    sets = {
        "data.symbol": '"FUT"',
        "data.timezone": '"Europe/Berlin"',
        "split.train_end": '""',
        "split.validation_end": '""',
        "strategy.enter": "0.5",
        "strategy.exit": "0.499",
        "model.window": "10",
        "model.units": "[4]",
        "training.epochs": "2",
        "training.patience": "1",
        "report.figures": "false",
    }
    args = ["--data", str(path), "--out", str(out), "-q"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    assert run_backtest_main(args) == 0
    return out


def test_returns_are_daily_and_fills_keep_their_bar_times(intraday_run):
    returns = pd.read_csv(intraday_run / "returns.csv")
    assert returns["date"].is_unique and returns["date"].str.len().eq(10).all()
    txns = pd.read_csv(intraday_run / "transactions.csv")
    assert len(txns) > 0
    times = pd.to_datetime(txns["date"], format="ISO8601", utc=True)
    assert (times != times.dt.normalize()).any()  # real bar times, not midnight


def test_predictions_are_stamped_with_the_bar_time_in_utc(intraday_run):
    preds = pd.read_csv(intraday_run / "predictions.csv")
    assert len(preds) == 2142 and preds["date"].is_unique
    # 09:05 in Frankfurt on 2 January 2006 is 08:05 UTC.
    assert preds["date"].iloc[0] == "2006-01-02 08:05:00"


def test_compounded_daily_returns_reproduce_the_final_value(intraday_run):
    m = json.loads((intraday_run / "metrics.json").read_text())
    r = pd.read_csv(intraday_run / "returns.csv")["strategy"]
    assert m["run"]["start_value"] * (1 + r).prod() == pytest.approx(m["run"]["final_value"])
    assert (intraday_run / "report.html").stat().st_size > 10_000

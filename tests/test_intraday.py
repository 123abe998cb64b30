"""Intraday bars go end to end: load with a time column, train, backtest, report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kerastrader.backtest import run_experiment
from tests.conftest import shared_file, tiny_config


@pytest.fixture(scope="module")
def intraday_run(tmp_path_factory):
    path = shared_file("2006-min-005.csv")
    cfg = tiny_config(
        data={"path": str(path), "symbol": "FUT", "timezone": "Europe/Berlin"},
        split={"train_end": "", "validation_end": ""},
        strategy={"enter": 0.5, "exit": 0.499},
    )
    out = tmp_path_factory.mktemp("intraday") / "run"
    run_experiment(cfg, out)
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

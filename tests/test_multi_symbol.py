"""Several instruments in one run: one shared model, one feed and position per symbol."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kerastrader.cli import run_backtest_main
from tests.conftest import TINY_ARGS, random_walk_bars

TINY = [*TINY_ARGS, "--set", "strategy.enter=0.5", "--set", "strategy.exit=0.499"]


@pytest.fixture(scope="module")
def long_csv(orcl_slice, tmp_path_factory):
    """A long-format file: real ORCL 2000-2006 and a generated instrument on the same days."""
    other = random_walk_bars(len(orcl_slice), seed=11)
    other.index = orcl_slice.index
    rows = []
    for sym, bars in (("ORCL", orcl_slice), ("GEN", other)):
        frame = bars[["open", "high", "low", "close", "volume"]].copy()
        frame.insert(0, "Symbol", sym)
        frame.index = frame.index.strftime("%Y-%m-%d")
        rows.append(frame.rename_axis("Date").reset_index())
    long = pd.concat(rows).sort_values(["Date", "Symbol"])
    long.columns = ["Date", "Symbol", "Open", "High", "Low", "Close", "Volume"]
    path = tmp_path_factory.mktemp("long") / "universe.csv"
    long.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def multi_run(long_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "run"
    args = ["--data", str(long_csv), "--out", str(out), "-q", *TINY]
    assert run_backtest_main([*args, "--set", 'data.symbols=["*"]']) == 0
    return out


def test_each_symbol_has_its_own_position_column(multi_run):
    positions = pd.read_csv(multi_run / "positions.csv")
    assert list(positions.columns) == ["date", "GEN", "ORCL", "cash"]


def test_both_symbols_trade(multi_run):
    txns = pd.read_csv(multi_run / "transactions.csv")
    assert set(txns["symbol"]) == {"GEN", "ORCL"}


def test_one_shared_model_trained_on_both(multi_run):
    meta = json.loads((multi_run / "model" / "metadata.json").read_text())
    assert meta["symbols"] == ["GEN", "ORCL"]


def test_predictions_have_a_row_per_symbol_and_bar(multi_run, orcl_slice):
    preds = pd.read_csv(multi_run / "predictions.csv")
    assert list(preds.columns) == ["date", "symbol", "prediction"]
    assert len(preds) == 2 * len(orcl_slice)
    assert not preds.duplicated(["date", "symbol"]).any()


def test_benchmark_is_equal_weight_bought_at_the_open_after_the_first_decision(
    multi_run, orcl_slice
):
    r = pd.read_csv(multi_run / "returns.csv", index_col="date")
    other = random_walk_bars(len(orcl_slice), seed=11)
    days = orcl_slice.index.strftime("%Y-%m-%d")
    opens = pd.DataFrame({"ORCL": orcl_slice["open"].to_numpy(), "GEN": other["open"].to_numpy()},
                         index=days)  # fmt: skip
    closes = pd.DataFrame(
        {"ORCL": orcl_slice["close"].to_numpy(), "GEN": other["close"].to_numpy()}, index=days
    )
    decided = closes.index.get_loc(r.index[0])  # the first traded day only decides
    assert r["benchmark"].iloc[0] == 0.0
    # Half the money in each at the next open; the 0.1% commission and 5 bps slippage on that
    # money are paid from cash (a debit of 0.15% of the start value held to the end).
    growth = (closes.iloc[-1] / opens.iloc[decided + 1]).mean() - (0.001 + 0.0005)
    assert np.prod(1 + r["benchmark"].to_numpy()) == pytest.approx(growth, rel=1e-9)


def test_returns_compound_to_the_final_value(multi_run):
    m = json.loads((multi_run / "metrics.json").read_text())
    r = pd.read_csv(multi_run / "returns.csv")["strategy"]
    assert m["run"]["start_value"] * (1 + r).prod() == pytest.approx(m["run"]["final_value"])
    assert m["run"]["symbols"] == ["GEN", "ORCL"]


def test_an_unknown_symbol_is_one_line(long_csv, tmp_path, capsys):
    args = ["--data", str(long_csv), "--out", str(tmp_path / "x"), *TINY]
    assert run_backtest_main([*args, "--set", 'data.symbols=["ORCL", "NOPE"]']) == 2
    assert "data.symbols: NOPE not in" in capsys.readouterr().err


def test_a_glob_of_files_is_one_symbol_per_file(multi_run, long_csv, tmp_path):
    long = pd.read_csv(long_csv)
    for sym, rows in long.groupby("Symbol"):
        rows.drop(columns="Symbol").to_csv(tmp_path / f"{sym.lower()}-daily.csv", index=False)
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "*-daily.csv"), "--model", str(multi_run / "model")]
    code = run_backtest_main([*args, "--out", str(out), "-q", *TINY, "--set", 'data.symbols=["*"]'])
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["run"]["symbols"] == ["GEN", "ORCL"]
    a = pd.read_csv(multi_run / "transactions.csv")
    b = pd.read_csv(out / "transactions.csv")
    pd.testing.assert_frame_equal(a, b)  # the same bars, the same model: the same trades


def test_buy_and_hold_of_each_instrument_is_in_metrics_and_benchmarks_csv(multi_run):
    metrics = json.loads((multi_run / "metrics.json").read_text())
    assert set(metrics["instruments"]) == {"GEN", "ORCL"}
    each = pd.read_csv(multi_run / "benchmarks.csv")
    returns = pd.read_csv(multi_run / "returns.csv")
    assert list(each.columns) == ["date", "GEN", "ORCL"]
    # the benchmark is the equal-weight mix of the two, held: its growth is their mean growth,
    # less the 0.15% of the start value its entry paid (each instrument's line is without costs)
    growth = (1 + each[["GEN", "ORCL"]]).cumprod().mean(axis=1)
    growth.iloc[1:] -= 0.001 + 0.0005
    np.testing.assert_allclose((1 + returns["benchmark"]).cumprod(), growth, rtol=1e-9)
    assert "Buy and hold of each instrument" in (multi_run / "report.html").read_text()


def test_one_model_per_instrument_is_trained_and_saved_per_symbol(long_csv, tmp_path):
    out = tmp_path / "per"
    per = ["--set", 'data.symbols=["*"]', "--set", 'portfolio.models="per_instrument"']
    args = ["--data", str(long_csv), "--out", str(out), "-q", *TINY, *per]
    assert run_backtest_main(args) == 0
    for sym in ("GEN", "ORCL"):
        meta = json.loads((out / "model" / sym / "metadata.json").read_text())
        assert meta["symbols"] == [sym]
    again = tmp_path / "again"
    reuse = ["--data", str(long_csv), "--out", str(again), "--model", str(out / "model"), "-q",
             *TINY, *per]  # fmt: skip
    assert run_backtest_main(reuse) == 0
    a = pd.read_csv(out / "predictions.csv")
    b = pd.read_csv(again / "predictions.csv")
    np.testing.assert_allclose(a["prediction"], b["prediction"], atol=1e-6)


def test_strategic_weights_naming_an_unknown_symbol_are_a_config_error(long_csv, tmp_path, capsys):
    args = ["--data", str(long_csv), "--out", str(tmp_path / "x"), "-q", *TINY,
            "--set", 'data.symbols=["*"]', "--set", 'portfolio.allocation="strategic"',
            "--set", "portfolio.weights={ ORCL = 0.5, XYZ = 0.5 }"]  # fmt: skip
    assert run_backtest_main(args) == 2
    assert "portfolio.weights: XYZ not among the symbols" in capsys.readouterr().err

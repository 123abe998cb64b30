"""The command line, end to end on real bars with a tiny model, and its answers to mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kerastrader.cli import main, run_backtest_main
from tests.conftest import ROOT, TINY_ARGS

TINY = TINY_ARGS
STATS = {
    "annual_return",
    "cumulative_returns",
    "annual_volatility",
    "sharpe_ratio",
    "calmar_ratio",
    "stability",
    "max_drawdown",
    "omega_ratio",
    "sortino_ratio",
    "skew",
    "kurtosis",
    "tail_ratio",
    "daily_value_at_risk",
}


@pytest.fixture(scope="module")
def slice_csv(orcl_slice_csv) -> Path:
    return orcl_slice_csv


@pytest.fixture(scope="module")
def run_dir(slice_csv, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("run") / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_backtest.py"),
            "--data",
            str(slice_csv),
            "--out",
            str(out),
            *TINY,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    return out, proc


def test_run_ends_with_a_line_naming_the_report(run_dir):
    out, proc = run_dir
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"Report: {out / 'report.html'}"


def test_run_writes_every_file_of_the_output_contract(run_dir):
    out, _ = run_dir
    for name in (
        "report.html",
        "metrics.json",
        "returns.csv",
        "positions.csv",
        "transactions.csv",
        "predictions.csv",
        "config.toml",
    ):
        assert (out / name).is_file(), name
    assert {p.name for p in (out / "model").iterdir()} >= {"model.keras", "metadata.json"}
    assert list(pd.read_csv(out / "returns.csv").columns) == ["date", "strategy", "benchmark"]
    assert list(pd.read_csv(out / "predictions.csv").columns) == ["date", "prediction"]


def test_metrics_json_has_the_promised_keys(run_dir):
    out, _ = run_dir
    m = json.loads((out / "metrics.json").read_text())
    assert STATS | {"alpha", "beta"} <= set(m["strategy"])
    assert STATS <= set(m["benchmark"])
    assert {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "n_test",
        "test_start",
        "test_end",
    } <= set(m["model"])
    assert {"start", "end", "bars", "trades", "final_value"} <= set(m["run"])


def test_compounded_returns_reproduce_final_value_and_cumulative_return(run_dir):
    out, _ = run_dir
    m = json.loads((out / "metrics.json").read_text())
    r = pd.read_csv(out / "returns.csv")["strategy"].to_numpy()
    growth = np.prod(1.0 + r)
    assert 100_000.0 * growth == pytest.approx(m["run"]["final_value"], rel=1e-9)
    assert growth - 1.0 == pytest.approx(m["strategy"]["cumulative_returns"], rel=1e-9)


def test_backtest_covers_the_model_test_period_only(run_dir):
    out, _ = run_dir
    m = json.loads((out / "metrics.json").read_text())
    meta = json.loads((out / "model" / "metadata.json").read_text())
    assert m["run"]["start"] == meta["periods"]["test"][0]
    assert m["model"]["accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])
    assert m["model"]["n_test"] == meta["metrics"]["test"]["n_test"]


def test_predictions_have_one_row_per_bar_and_are_empty_during_warm_up(run_dir, slice_csv):
    out, _ = run_dir
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == len(pd.read_csv(slice_csv))  # every bar of the data file
    meta = json.loads((out / "model" / "metadata.json").read_text())
    warmup = meta["warmup_bars"]
    assert preds["prediction"].iloc[: warmup - 1].isna().all()
    assert preds["prediction"].iloc[warmup - 1 :].notna().all()
    assert preds["date"].is_monotonic_increasing and preds["date"].is_unique


def test_a_saved_model_is_reused_with_model_and_gives_the_same_predictions(
    run_dir, slice_csv, tmp_path
):
    out, _ = run_dir
    again = tmp_path / "again"
    code = run_backtest_main(
        ["--data", str(slice_csv), "--model", str(out / "model"), "--out", str(again), "-q", *TINY]
    )
    assert code == 0
    assert not (again / "model").exists()
    a = pd.read_csv(out / "predictions.csv")
    b = pd.read_csv(again / "predictions.csv")
    np.testing.assert_allclose(a["prediction"], b["prediction"], atol=1e-6)


def _user_error(capsys, argv) -> str:
    code = main(["backtest", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("kerastrader: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_config_key_is_one_line_naming_it(capsys):
    line = _user_error(capsys, ["--set", "training.epoch=2"])
    assert "unknown key training.epoch" in line


def test_missing_config_file_is_one_line(capsys, tmp_path):
    line = _user_error(capsys, [str(tmp_path / "nope.toml")])
    assert "config file not found" in line


def test_missing_data_file_is_one_line(capsys, tmp_path):
    line = _user_error(capsys, ["--data", str(tmp_path / "nope.csv")])
    assert "nope.csv" in line


def test_bad_bars_are_one_line_naming_file_and_row(capsys, tmp_path, slice_csv):
    lines = slice_csv.read_text().splitlines()
    date, o, h, low, c, a, v = lines[5].split(",")
    lines[5] = ",".join([date, o, low, h, c, a, v]) if float(h) > float(low) else lines[5]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    line = _user_error(capsys, ["--data", str(bad)])
    assert "bad.csv" in line and "row 6" in line


def test_a_model_that_does_not_fit_the_config_is_one_line_with_the_fix(capsys, run_dir):
    out, _ = run_dir
    line = _user_error(capsys, ["--model", str(out / "model")])
    assert "trained with window 10, config has model.window = 30" in line
    assert "config.toml" in line


def test_missing_model_directory_is_one_line(capsys, tmp_path):
    line = _user_error(capsys, ["--model", str(tmp_path / "nomodel")])
    assert "nomodel" in line


def test_console_script_is_installed_and_offers_backtest():
    script = Path(sys.executable).parent / "kerastrader"
    if not script.exists():
        pytest.skip(f"{script} is absent: the package is not installed into this interpreter")
    proc = subprocess.run([str(script), "backtest", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--model" in proc.stdout and "--set" in proc.stdout


def test_an_in_sample_backtest_is_flagged_in_metrics_and_report(run_dir, slice_csv, tmp_path):
    out, _ = run_dir
    again = tmp_path / "insample"
    args = ["--data", str(slice_csv), "--model", str(out / "model"), "--out", str(again)]
    code = run_backtest_main([*args, "-q", *TINY, "--set", 'backtest.start="2004-01-02"'])
    assert code == 0
    assert json.loads((again / "metrics.json").read_text())["run"]["in_sample"] is True
    assert "IN-SAMPLE" in (again / "report.html").read_text()
    default = json.loads((out / "metrics.json").read_text())
    assert default["run"]["in_sample"] is False


def test_bar_by_bar_backtest_trades_exactly_like_the_vectorised_one(run_dir, slice_csv, tmp_path):
    out, _ = run_dir
    step = tmp_path / "step"
    args = ["--data", str(slice_csv), "--model", str(out / "model"), "--out", str(step)]
    assert run_backtest_main([*args, "-q", *TINY, "--set", "backtest.runonce=false"]) == 0
    a = pd.read_csv(out / "transactions.csv")
    b = pd.read_csv(step / "transactions.csv")
    pd.testing.assert_frame_equal(a, b)
    ma = json.loads((out / "metrics.json").read_text())["run"]["final_value"]
    mb = json.loads((step / "metrics.json").read_text())["run"]["final_value"]
    assert ma == pytest.approx(mb, rel=1e-12)

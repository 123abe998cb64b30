"""The interactive charts: drawn in a real browser with nothing fetched, in the report, compare
and study pages; their numbers equal the run files' (read here with the csv module); long
series decimated without losing a trough; pages under their stated size."""

from __future__ import annotations

import csv
import math
import shutil
import statistics
from pathlib import Path

import empyrical
import numpy as np
import pandas as pd
import pytest

from kerastrader.cli import main
from tests.test_report_page import assert_charts_drawn, browse, chromium_path

TRACES = """(() => Object.fromEntries(
    Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => [d.id,
        d._fullData.map(t => ({name: t.name, x: Array.from(t.x || []).map(String),
                               y: Array.from(t.y || [])}))])))()"""


@pytest.fixture(scope="module")
def browser_exe() -> str:
    return chromium_path()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(text: str) -> float:
    return float(text) if text != "" else math.nan


@pytest.fixture(scope="module")
def report_traces(browser_exe, full_run) -> dict:
    seen = browse(browser_exe, full_run / "report.html", script=TRACES)
    assert seen["requests"] == []
    return {cid: {t["name"]: t for t in traces} for cid, traces in seen["result"].items()}


def test_equity_chart_draws_the_growth_of_returns_csv(report_traces, full_run):
    rows = _rows(full_run / "returns.csv")
    growth, value = [], 1.0
    for row in rows:
        value *= 1.0 + float(row["strategy"])
        growth.append(value)
    trace = report_traces["chart-equity"]["Strategy"]
    assert trace["x"] == [row["date"] for row in rows]
    np.testing.assert_allclose(trace["y"], growth, rtol=1e-12)


def test_drawdown_chart_trough_is_empyricals_max_drawdown(report_traces, full_run):
    strat = pd.read_csv(full_run / "returns.csv", index_col="date")["strategy"]
    trace = report_traces["chart-equity"]["Strategy drawdown"]
    assert min(trace["y"]) == pytest.approx(empyrical.max_drawdown(strat), rel=1e-12)


def test_fill_markers_are_the_fills_in_transactions_csv(report_traces, full_run):
    rows = _rows(full_run / "transactions.csv")
    charts = report_traces["chart-price-0"]
    for side, keep in (("Buy", lambda a: a > 0), ("Sell", lambda a: a < 0)):
        mine = [r for r in rows if keep(float(r["amount"]))]
        assert len(mine) >= 1
        assert charts[side]["x"] == [r["date"] for r in mine]
        assert charts[side]["y"] == [float(r["price"]) for r in mine]


def test_prediction_and_close_lines_come_from_predictions_csv_and_the_data_file(
    report_traces, full_run, orcl_slice_csv
):
    dates = [row["date"] for row in _rows(full_run / "returns.csv")]
    first, last = dates[0], dates[-1]
    preds = [r for r in _rows(full_run / "predictions.csv") if first <= r["date"] <= last]
    charts = report_traces["chart-price-0"]
    assert charts["Prediction"]["x"] == [r["date"] for r in preds]
    np.testing.assert_allclose(charts["Prediction"]["y"], [_num(r["prediction"]) for r in preds])
    bars = [r for r in _rows(orcl_slice_csv) if first <= r["Date"] <= last]
    assert charts["Close"]["x"] == [r["Date"] for r in bars] == dates
    np.testing.assert_allclose(charts["Close"]["y"], [float(r["Close"]) for r in bars])


def test_rolling_sharpe_chart_is_mean_over_sample_std_times_root_252(report_traces, full_run):
    returns = [float(r["strategy"]) for r in _rows(full_run / "returns.csv")]
    trace = report_traces["chart-rolling"]["Strategy Sharpe"]
    window = 126
    for end in (len(returns), len(returns) - 50):
        part = returns[end - window : end]
        expected = statistics.mean(part) / statistics.stdev(part) * math.sqrt(252)
        assert trace["y"][end - 1] == pytest.approx(expected, rel=1e-9)
    assert all(math.isnan(v) for v in trace["y"][: window - 1])


@pytest.fixture(scope="module")
def compare_dir(full_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    other = shutil.copytree(full_run, root / "other")
    assert main(["report", "compare", str(full_run), str(other), "--out", str(root / "cmp")]) == 0
    return root / "cmp"


def test_compare_page_charts_render_with_no_network(browser_exe, compare_dir):
    seen = browse(browser_exe, compare_dir / "compare.html", script=TRACES)
    assert_charts_drawn(seen, {"chart-compare-equity", "chart-compare-rolling"})
    names = [t["name"] for t in seen["result"]["chart-compare-equity"]]
    assert names[:3] == ["full", "full drawdown", "other"]
    assert (compare_dir / "compare.html").stat().st_size < 2_000_000


@pytest.fixture(scope="module")
def study_dir(study_c) -> Path:
    """Study C shrunk (three tiny runs, the session's: tests/conftest.py): the page is built
    from the runs' files."""
    return study_c[0]


def test_study_page_chart_renders_each_runs_returns_csv(browser_exe, study_dir):
    seen = browse(browser_exe, study_dir / "study.html", script=TRACES)
    assert_charts_drawn(seen, {"chart-study-equity"})
    traces = {t["name"]: t for t in seen["result"]["chart-study-equity"]}
    for run in ("faithful", "honest"):
        rows = _rows(study_dir / run / "returns.csv")
        growth = np.cumprod([1.0 + float(r["strategy"]) for r in rows])
        drawn = [t for t in traces.values() if t["x"] == [r["date"] for r in rows]]
        assert any(np.allclose(t["y"], growth, rtol=1e-12) for t in drawn), run
    assert (study_dir / "study.html").stat().st_size < 2_000_000


def test_a_long_series_is_decimated_keeping_its_trough_and_peak():
    from kerastrader.reports.charts import MAX_POINTS, chart_block, equity_drawdown_chart

    rng = np.random.default_rng(7)
    n = 50_000
    index = pd.date_range("1990-01-01", periods=n, freq="h", tz="UTC")
    returns = pd.Series(rng.normal(0.0, 0.004, n), index=index)
    value, peak, trough, top = 1.0, 1.0, 0.0, 1.0
    for r in returns.to_numpy():
        value *= 1.0 + r
        peak = max(peak, value)
        top = max(top, value)
        trough = min(trough, value / peak - 1.0)
    fig = equity_drawdown_chart(returns, returns * 0.5)
    for trace in fig.data:
        assert len(trace.y) <= MAX_POINTS
    by_name = {t.name: t for t in fig.data}
    assert min(by_name["Strategy drawdown"].y) == pytest.approx(trough, rel=1e-12)
    assert max(by_name["Strategy"].y) == pytest.approx(top, rel=1e-12)
    assert len(chart_block(fig, "long", "long").encode()) < 300_000


def test_a_chart_div_names_no_address_and_turns_off_the_logo():
    from kerastrader.reports.charts import figure_div, rolling_metrics_chart

    index = pd.date_range("2020-01-01", periods=300, freq="B", tz="UTC")
    returns = pd.Series(np.random.default_rng(1).normal(0, 0.01, 300), index=index)
    div = figure_div(rolling_metrics_chart(returns, 60), "r")
    assert "http://" not in div and "https://" not in div
    assert '"displaylogo": false' in div and 'id="r"' in div


@pytest.fixture(scope="module")
def forecast_dir(tmp_path_factory) -> Path:
    """A tiny ``kerastrader forecast`` on the simulated book (no shared data needed)."""
    from tests.test_forecast import assumptions_config

    tmp = tmp_path_factory.mktemp("forecast")
    assert main(["forecast", str(assumptions_config(tmp)), "--out", str(tmp / "run"), "-q"]) == 0
    return tmp / "run"


def test_forecast_page_fan_chart_renders_with_no_network(browser_exe, forecast_dir):
    seen = browse(browser_exe, forecast_dir / "forecast.html", script=TRACES)
    assert_charts_drawn(seen, {"fan"})
    rows = _rows(forecast_dir / "forecast.csv")
    path = {t["name"]: t for t in seen["result"]["fan"]}["point path"]
    assert [x[:10] for x in path["x"]] == [r["date"][:10] for r in rows]
    assert np.allclose(path["y"], [float(r["point"]) for r in rows], rtol=1e-12)


@pytest.fixture(scope="module")
def forecast_study_dir(tmp_path_factory) -> Path:
    """Study D's faithful run shrunk (simulated book: no shared data); its page."""
    from tests.test_studies import tiny_study_d

    return tiny_study_d(tmp_path_factory)


def test_forecast_study_page_charts_render_with_no_network(browser_exe, forecast_study_dir):
    seen = browse(browser_exe, forecast_study_dir / "study.html")
    assert_charts_drawn(seen, {"fan_0"})
    assert (forecast_study_dir / "study.html").stat().st_size < 2_000_000

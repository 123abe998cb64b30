"""write_run_files: a real backtest in, the run's files and a self-contained report out."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re

import backtrader as bt
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from kerastrader.models.evaluation import classification_metrics
from kerastrader.reports.analyzer import PortfolioAnalyzer
from kerastrader.reports.stats import STAT_KEYS, strategy_stats
from kerastrader.reports.writer import write_run_files
from tests.conftest import random_walk_bars

FILES = (
    "report.html",
    "metrics.json",
    "returns.csv",
    "positions.csv",
    "transactions.csv",
    "config.toml",
)
CONFIG = '[data]\nsymbol = "AAA"  # <b>not markup</b>\n'


# Five closed round trips and one left open: pyfolio skips its round-trip sheet below five.
PLAN = {20: 0.5, 40: 0.0, 60: 0.5, 80: 0.0, 100: 0.5, 120: 0.0, 140: 0.5, 160: 0.0}
PLAN |= {180: 0.5, 200: 0.0, 220: 0.8}


class Plan(bt.Strategy):
    params = (("plan", PLAN),)

    def next(self) -> None:
        target = self.p.plan.get(len(self.data))
        if target is not None:
            self.order_target_percent(target=target)


def backtest(plan: dict | None = None) -> tuple[dict, pd.DataFrame, float]:
    bars = random_walk_bars(300, seed=0)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=bars, name="AAA"))
    cerebro.broker.setcash(100_000.0)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.addstrategy(Plan, **({} if plan is None else {"plan": plan}))
    cerebro.addanalyzer(PortfolioAnalyzer, _name="pf", start=bars.index[10].date())
    strategy = cerebro.run()[0]
    return strategy.analyzers.pf.get_analysis(), bars, strategy.broker.getvalue()


def model_inputs(returns: pd.Series) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, len(returns))
    y_prob = np.clip(0.5 + 0.15 * (y_true - 0.5) + rng.normal(0, 0.12, len(y_true)), 0, 1)
    model = classification_metrics(y_true, y_prob)
    model.update(test_start=str(returns.index[0].date()), test_end=str(returns.index[-1].date()))
    return model, y_true, y_prob


def write(out, a: dict, bars: pd.DataFrame, figures: bool = False, with_model: bool = True):
    bench = bars["close"].pct_change()
    bench.index = bench.index.tz_localize("UTC")
    model = y_true = y_prob = None
    if with_model:
        model, y_true, y_prob = model_inputs(a["returns"])
    return write_run_files(
        out,
        returns=a["returns"],
        benchmark=bench,
        positions=a["positions"],
        transactions=a["transactions"],
        trades=a["trades"],
        start_value=a["start_value"],
        model=model,
        y_true=y_true,
        y_prob=y_prob,
        config_toml=CONFIG,
        title="AAA <direction> & co",
        symbol="AAA",
        figures=figures,
        extra_run={"note": "test"},
    )


def strict_json(path) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def traded():
    return backtest()


@pytest.fixture(scope="module")
def quick_run(traded, tmp_path_factory):
    a, bars, broker_value = traded
    out = tmp_path_factory.mktemp("quick")
    return out, write(out, a, bars), broker_value


@pytest.fixture(scope="module")
def full_report(traded, tmp_path_factory):
    """The one run with pyfolio's tear sheets (slow): stdout and open figures recorded."""
    a, bars, _ = traded
    out = tmp_path_factory.mktemp("full")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        write(out, a, bars, figures=True)
    return out, (out / "report.html").read_text(), stdout.getvalue(), plt.get_fignums()


def test_every_file_is_written_with_exactly_the_named_columns(quick_run):
    out, _, _ = quick_run
    assert all((out / name).is_file() for name in FILES)
    assert list(pd.read_csv(out / "returns.csv").columns) == ["date", "strategy", "benchmark"]
    assert list(pd.read_csv(out / "positions.csv").columns) == ["date", "AAA", "cash"]
    assert list(pd.read_csv(out / "transactions.csv").columns) == [
        "date",
        "amount",
        "price",
        "symbol",
        "commission",
    ]
    assert (out / "config.toml").read_text() == CONFIG


def test_returns_csv_holds_daily_returns_dated_as_iso_days(quick_run, traded):
    out, _, _ = quick_run
    a, bars, _ = traded
    r = pd.read_csv(out / "returns.csv")
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in r["date"])
    assert r["date"].iloc[0] == str(bars.index[10].date())
    np.testing.assert_allclose(r["strategy"], a["returns"].to_numpy(), rtol=1e-11)
    expected = bars["close"].pct_change().iloc[10:].to_numpy()
    np.testing.assert_allclose(r["benchmark"], expected, rtol=1e-11)


def test_metrics_json_has_every_required_key_and_no_nan(quick_run, traded):
    out, metrics, _ = quick_run
    m = strict_json(out / "metrics.json")
    assert m == json.loads(json.dumps(metrics))
    assert set(STAT_KEYS) | {"alpha", "beta", "gross_leverage", "daily_turnover"} <= set(
        m["strategy"]
    )
    # The headline numbers again, in plain numpy from the daily returns and the benchmark.
    a, bars, _ = traded
    r = a["returns"].to_numpy()
    b = bars["close"].pct_change().iloc[10:].to_numpy()
    wealth = np.cumprod(1 + r)
    beta = np.cov(r, b)[0, 1] / np.var(b, ddof=1)
    expected = {
        "cumulative_returns": wealth[-1] - 1,
        "annual_return": wealth[-1] ** (252 / len(r)) - 1,
        "annual_volatility": r.std(ddof=1) * np.sqrt(252),
        "sharpe_ratio": r.mean() / r.std(ddof=1) * np.sqrt(252),
        "max_drawdown": np.min(wealth / np.maximum.accumulate(wealth) - 1),
        "beta": beta,
        "alpha": (1 + np.mean(r - beta * b)) ** 252 - 1,
    }
    for key, value in expected.items():
        assert m["strategy"][key] == pytest.approx(value, rel=1e-9), key
    assert m["benchmark"]["cumulative_returns"] == pytest.approx(np.prod(1 + b) - 1, rel=1e-9)
    assert set(STAT_KEYS) <= set(m["benchmark"])
    model_keys = {"accuracy", "precision", "recall", "f1", "roc_auc", "n_test"}
    assert model_keys | {"test_start", "test_end", "confusion_matrix"} <= set(m["model"])
    run_keys = {"start", "end", "bars", "trades", "fills", "start_value", "final_value"}
    assert run_keys | {"note"} <= set(m["run"])


def test_run_summary_matches_the_broker(quick_run, traded):
    _, metrics, broker_value = quick_run
    a, bars, _ = traded
    run = metrics["run"]
    assert run["final_value"] == pytest.approx(broker_value, rel=1e-9)
    assert (run["start"], run["end"]) == (str(bars.index[10].date()), str(bars.index[-1].date()))
    assert (run["bars"], run["trades"], run["fills"]) == (290, 5, 11)
    assert run["start_value"] == a["start_value"]


def test_page_escapes_text_from_the_title_and_config(quick_run):
    out, _, _ = quick_run
    page = (out / "report.html").read_text()
    assert "AAA &lt;direction&gt; &amp; co" in page and "<direction>" not in page
    assert "&lt;b&gt;not markup&lt;/b&gt;" in page


def test_report_is_self_contained(full_report):
    _, page, _, _ = full_report
    assert page.count("data:image/png;base64,") >= 8
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # inline scripts: plotly.js
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", markup, re.IGNORECASE)
    assert "<script src" not in page.lower() and "<link" not in page.lower()


def test_pyfolio_tables_are_captured_into_the_page(full_report):
    _, page, _, _ = full_report
    for heading in ("Worst drawdown periods", "Stress Events", "Summary stats"):
        assert heading in page, heading


def test_model_figures_are_in_the_page(full_report):
    _, page, _, _ = full_report
    for caption in ("ROC curve", "Confusion matrix", "Predicted probabilities"):
        assert f"<figcaption>{caption}" in page, caption


def test_nothing_leaks_to_stdout_and_no_figure_stays_open(full_report):
    _, _, stdout, open_figures = full_report
    assert "IPython.core.display" not in stdout and stdout.strip() == ""
    assert open_figures == [] and plt.get_fignums() == []


def test_a_strategy_that_never_trades_goes_end_to_end(tmp_path, capsys):
    a, bars, _ = backtest(plan={})
    metrics = write(tmp_path, a, bars, figures=True, with_model=False)
    assert (tmp_path / "transactions.csv").read_text().strip() == (
        "date,amount,price,symbol,commission"
    )
    assert metrics["run"]["trades"] == 0 and metrics["run"]["fills"] == 0
    assert metrics["model"] is None and strict_json(tmp_path / "metrics.json")["model"] is None
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    assert "IPython.core.display" not in capsys.readouterr().out
    assert plt.get_fignums() == []


def test_a_flat_strategy_has_json_safe_stats():
    index = pd.bdate_range("2001-01-01", periods=100, tz="UTC")
    flat = pd.Series(0.0, index=index)
    bench = pd.Series(np.random.default_rng(1).normal(0, 0.01, 100), index=index)
    stats = strategy_stats(flat, bench)
    assert {"alpha", "beta", *STAT_KEYS} <= set(stats)
    assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in stats.values())


def test_bad_input_leaves_an_existing_run_untouched(quick_run, traded, tmp_path):
    a, bars, _ = traded
    write(tmp_path, a, bars)
    before = {name: (tmp_path / name).read_bytes() for name in FILES}
    naive = a["returns"].tz_localize(None)
    with pytest.raises(ValueError, match="UTC"):
        write(tmp_path, {**a, "returns": naive}, bars)
    assert {name: (tmp_path / name).read_bytes() for name in FILES} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*FILES, "diagnostics.csv"])

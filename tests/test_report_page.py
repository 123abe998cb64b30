"""The report a person reads: renders in a real browser, and its numbers agree with
independent computations from the run's own files."""

from __future__ import annotations

import json
import shutil

import empyrical
import numpy as np
import pandas as pd
import pytest

from kerastrader.cli import main
from kerastrader.reports.runfiles import open_position_pnl, read_run, round_trips


def chromium_path() -> str:
    """Debian's chromium and the playwright extra, or a skip (a failure under CI=true)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="playwright is a test extra")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Checked before full_run trains a model."""
    return chromium_path()


PAGE_LIMIT = 4_000_000  # bytes: README states it (pyfolio images ~1.3 MB, plotly.js 1.19 MB)

CHARTS_DRAWN = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).every(
    d => d.querySelector('.main-svg') !== null)"""


def browse(chromium: str, path, script: str | None = None, screenshot=None) -> dict:
    """Open a page file in headless Chromium: every request it makes, its images, each plotly
    div (id, number of drawn SVG layers, traces) and ``script``'s result."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.resolve().as_uri(), wait_until="load")
            try:
                page.wait_for_function(CHARTS_DRAWN, timeout=15_000)
            except PlaywrightError:
                pass  # the assertions below say which chart has no SVG
            out = {
                "images": page.evaluate(
                    "Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
                ),
                "charts": page.evaluate(
                    "Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => "
                    "[d.id, d.querySelectorAll('.main-svg').length, (d._fullData || []).length])"
                ),
                "result": page.evaluate(script) if script else None,
            }
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    out["requests"] = [u for u in requests if not u.startswith(("file://", "data:"))]
    out["errors"] = errors
    return out


def assert_charts_drawn(seen: dict, ids: set[str]) -> None:
    """Each named chart (and every other plotly div) drew its SVG, and nothing was fetched."""
    assert seen["requests"] == [] and seen["errors"] == []
    drawn = {cid: (svgs, traces) for cid, svgs, traces in seen["charts"]}
    assert ids <= set(drawn), (ids, sorted(drawn))
    for cid, (svgs, traces) in drawn.items():
        assert svgs >= 1 and traces >= 1, (cid, svgs, traces)


def test_report_renders_in_a_real_browser_with_every_image_and_chart_and_no_network(
    chromium, full_run, tmp_path
):
    seen = browse(chromium, full_run / "report.html", screenshot=tmp_path / "report.png")
    assert len(seen["images"]) >= 8
    assert all(complete and width > 0 for complete, width in seen["images"])
    assert_charts_drawn(seen, {"chart-equity", "chart-rolling", "chart-price-0"})
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_report_page_stays_under_its_stated_size_with_plotly_inlined_once(full_run):
    page = (full_run / "report.html").read_text()
    assert len(page.encode()) < PAGE_LIMIT
    assert page.count("window.Plotly = Plotly") == 1  # one copy of plotly.js
    assert "<script src" not in page and "<link" not in page  # nothing loaded from elsewhere


def _headline(page: str, label: str, value: str) -> bool:
    return f"<tr><td>{label}</td><td>{value}</td>" in page


def test_headline_metrics_agree_with_empyrical_from_returns_csv(full_run):
    page = (full_run / "report.html").read_text()
    r = pd.read_csv(full_run / "returns.csv", index_col="date", parse_dates=True)
    strat, bench = r["strategy"], r["benchmark"]
    expected = {
        "Annual return": f"{empyrical.annual_return(strat):.2%}",
        "Cumulative return": f"{empyrical.cum_returns_final(strat):.2%}",
        "Annual volatility": f"{empyrical.annual_volatility(strat):.2%}",
        "Sharpe ratio": f"{empyrical.sharpe_ratio(strat):,.3f}",
        "Sortino ratio": f"{empyrical.sortino_ratio(strat):,.3f}",
        "Max drawdown": f"{empyrical.max_drawdown(strat):.2%}",
        "Calmar ratio": f"{empyrical.calmar_ratio(strat):,.3f}",
    }
    for label, value in expected.items():
        assert _headline(page, label, value), (label, value)
    alpha, beta = empyrical.alpha_beta(strat, bench)
    assert _headline(page, "Alpha (annual)", f"{alpha:.2%}")
    assert _headline(page, "Beta", f"{beta:,.3f}")
    bench_ann = f"{empyrical.annual_return(bench):.2%}"
    assert f"<td>Annual return</td><td>{expected['Annual return']}</td><td>{bench_ann}</td>" in page


def test_round_trip_pnl_adds_up_to_the_broker_result(full_run):
    run = read_run(full_run)
    trips = round_trips(run.transactions, run.values)
    assert len(trips) >= 2
    final = run.metrics["run"]["final_value"]
    start = run.metrics["run"]["start_value"]
    unrealised = open_position_pnl(run.transactions, run.positions)
    commissions = run.transactions["commission"].sum()
    # Round trips are priced before commissions; the broker's value is after them.
    assert trips["pnl"].sum() - commissions == pytest.approx(final - start - unrealised, abs=0.01)


def test_page_has_the_sections_a_reviewer_looks_for(full_run):
    page = (full_run / "report.html").read_text()
    for text in (
        "Monthly returns",
        "Rolling Sharpe ratio",
        "Long, short and net exposure",
        "Round trips",
        "Calibration curve",
        "ROC curve",
        "Data provenance",
        "SHA-256",
        "Stress Events",
        "Worst drawdown periods",
    ):
        assert text in page, text
    data = json.loads((full_run / "metrics.json").read_text())["data"]
    assert data["sha256"] in page


def test_report_command_rebuilds_the_page_from_the_run_files(full_run, tmp_path, capsys):
    copy = shutil.copytree(full_run, tmp_path / "copy")
    (copy / "report.html").unlink()
    assert main(["report", str(copy), "--no-figures", "-q"]) == 0
    assert capsys.readouterr().out.strip() == f"Report: {copy / 'report.html'}"
    rebuilt = (copy / "report.html").read_text()
    original = (full_run / "report.html").read_text()
    first_table = original.split("<table>")[1].split("</table>")[0]
    assert first_table in rebuilt


def test_compare_sets_runs_side_by_side(full_run, tmp_path, capsys):
    other = shutil.copytree(full_run, tmp_path / "other")
    m = json.loads((other / "metrics.json").read_text())
    m["strategy"]["sharpe_ratio"] = 9.876
    (other / "metrics.json").write_text(json.dumps(m))
    out = tmp_path / "compare.html"
    assert main(["report", "compare", str(full_run), str(other), "--out", str(out), "-q"]) == 0
    page = out.read_text()
    assert "<th>full</th><th>other</th>" in page
    assert "9.876" in page and 'id="chart-compare-equity"' in page


def test_compare_out_without_a_suffix_is_a_folder_holding_the_page(full_run, tmp_path, capsys):
    other = shutil.copytree(full_run, tmp_path / "other")
    out = tmp_path / "runs" / "cmp"
    assert main(["report", "compare", str(full_run), str(other), "--out", str(out), "-q"]) == 0
    assert out.is_dir() and (out / "compare.html").is_file()
    assert capsys.readouterr().out.strip() == f"Report: {out / 'compare.html'}"


def test_report_of_a_directory_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a complete run (missing metrics.json" in err and "Traceback" not in err


def test_returns_read_back_equal_what_was_written(full_run):
    run = read_run(full_run)
    r = pd.read_csv(full_run / "returns.csv")
    np.testing.assert_array_equal(run.returns.to_numpy(), r["strategy"].to_numpy())
    assert str(run.returns.index.tz) == "UTC"

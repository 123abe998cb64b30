"""The sweep's page: the best configuration, how much of its Sharpe ratio is luck (deflated
Sharpe ratio, PBO), and every job sorted by the chosen metric; plus the compare report of the
best jobs. Built from the sweep's files only, like every report."""

from __future__ import annotations

import html
import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from kerastrader.reports.html import CSS, fmt, table

log = logging.getLogger(__name__)

PCT_COLUMNS = {
    "annual_return",
    "cumulative_returns",
    "annual_volatility",
    "max_drawdown",
    "benchmark_annual_return",
}


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def multiple_testing_html(stats: dict[str, Any]) -> str:
    """The deflated Sharpe ratio and PBO of the best job, and how to read them."""
    if "deflated_sharpe" not in stats:
        return f"<p class='note'>{html.escape(stats.get('note', 'no statistics'))}</p>"
    d = stats["deflated_sharpe"]
    ann = math.sqrt(stats.get("periods_per_year", 252.0))
    verdict = (
        "significant at 5%: unlikely to be the luck of the draw"
        if d["dsr"] >= 0.95
        else "not significant: a best result this good is what this many trials give by luck"
    )
    rows = [
        ("Trials (finished jobs), N", str(d["n_trials"])),
        ("Best job's Sharpe ratio (annualised)", _num(d["sharpe"] * ann)),
        (
            "Expected best Sharpe ratio of N trials without edge, SR0 (annualised)",
            _num(d["sr0"] * ann),
        ),
        (
            "Standard deviation of the trials' Sharpe ratios (annualised)",
            _num(math.sqrt(max(d["sharpe_variance"], 0)) * ann),
        ),
        (
            "Share of the best Sharpe ratio that N trials reach by luck (SR0 / SR)",
            f"{d['luck_share']:.0%}",
        ),
        (
            "Daily returns T, skewness, kurtosis",
            f"{d['n_returns']}, {_num(d['skew'], 2)}, {_num(d['kurtosis'], 2)}",
        ),
        ("Probabilistic Sharpe ratio against 0 (no deflation)", _num(d["psr_zero"])),
        (
            "<b>Deflated Sharpe ratio</b> (probability the true Sharpe ratio exceeds SR0)",
            f"<b>{_num(d['dsr'])}</b>",
        ),
    ]
    p = stats.get("pbo", {})
    if "pbo" in p:
        rows.append(
            (
                "<b>Probability of backtest overfitting</b> (CSCV)",
                f"<b>{p['pbo']:.2f}</b> over {p['n_splits']} splits of {p['blocks']} blocks",
            )
        )
    else:
        rows.append(("Probability of backtest overfitting", html.escape(p.get("note", "n/a"))))
    text = (
        f"<p>The best of {d['n_trials']} jobs is {verdict}. The deflated Sharpe ratio "
        "(Bailey and Lopez de Prado, 2014) is the probability that the best job's true Sharpe "
        "ratio is above SR0, the best that this many trials with no edge at all would show on "
        "average, allowing for the returns' skewness and fat tails; 0.95 or more is "
        "significant at 5%. PBO (Bailey, Borwein, Lopez de Prado and Zhu, 2015) splits the "
        "dates into blocks and, for every half of them, asks whether the job that was best on "
        "that half is better than the median job on the other half; PBO is the share of "
        "splits where it is not. Near 0.5 the selection is a coin toss; well below 0.5 the "
        "ranking holds out of sample.</p>"
    )
    return text + table([(a, b) for a, b in rows], ("", "value"))


def write_sweep_report(
    out: Path,
    results: pd.DataFrame,
    stats: dict[str, Any],
    metric: str,
    grid: dict[str, list[Any]],
) -> Path:
    """sweep.html (always) and compare.html (the best jobs' compare report, two or more)."""
    ok = results[results["status"] == "ok"].copy() if len(results) else results
    if len(ok) and metric in ok:
        ok = ok.assign(_m=pd.to_numeric(ok[metric], errors="coerce"))
        ok = ok.sort_values("_m", ascending=False, na_position="last").drop(columns="_m")
    failed = results[results["status"] != "ok"] if len(results) else results
    params = list(grid)
    shown = [
        c
        for c in (
            "sharpe_ratio",
            "annual_return",
            "max_drawdown",
            "trades",
            "model_accuracy",
            "benchmark_sharpe_ratio",
        )
        if c in ok
    ]
    if metric in ok and metric not in shown:
        shown.insert(0, metric)
    rows = []
    for _, r in ok.iterrows():
        link = f"<a href='jobs/{r['key']}/report.html'>{html.escape(r['key'])}</a>"
        cells = [fmt(r.get(p)) for p in params]
        cells += [fmt(_clean(r.get(c)), "pct" if c in PCT_COLUMNS else "num") for c in shown]
        rows.append((link, *cells))
    fail_rows = [
        (html.escape(str(r["key"])), *[fmt(r.get(p)) for p in params], html.escape(str(r["error"])))
        for _, r in failed.iterrows()
    ]
    compare_link = ""
    if len(ok) >= 2:
        from kerastrader.reports.compare import compare_runs

        top = [out / "jobs" / k for k in ok["key"].head(12)]
        try:
            compare_runs(top, out / "compare.html")
            compare_link = (
                f"<p><a href='compare.html'>Compare report of the best {len(top)} "
                f"jobs</a> (by {html.escape(metric)})</p>"
            )
        except Exception as exc:  # noqa: BLE001 - the sweep page is still worth writing
            log.warning("compare.html not written: %s", exc)
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    best = stats.get("best")
    page = "\n".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>Sweep of {len(results)} jobs</title><style>{CSS}</style></head><body><main>",
            f"<h1>Sweep of {len(results)} jobs</h1>",
            f"<p class='sub'>{len(ok)} finished, {len(failed)} failed &middot; ranked by "
            f"{html.escape(metric)} &middot; grid: {html.escape(json.dumps(grid))}</p>",
            f"<h2>Best configuration: {html.escape(_describe_best(results, best, params))}</h2>"
            if best
            else "",
            "<h2>How much of the best result is luck</h2>",
            multiple_testing_html(stats),
            "<h2>Jobs</h2>",
            compare_link,
            table(rows, ("job", *params, *shown)) if rows else "<p>No finished job.</p>",
            "<h2>Failed jobs</h2>" if fail_rows else "",
            table(fail_rows, ("job", *params, "error")) if fail_rows else "",
            f"<footer>Generated {made} by kerastrader.</footer></main></body></html>",
        ]
    )
    path = out / "sweep.html"
    path.write_text(page)
    return path


def _describe_best(results: pd.DataFrame, best: str, params: list[str]) -> str:
    """``key (section.key = value, ...)``: which values won, not only the folder name."""
    row = results[results["key"] == best]
    if not len(row) or not params:
        return str(best)
    values = ", ".join(f"{p} = {row.iloc[0][p]}" for p in params if p in row)
    return f"{best} ({values})"


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):
        return x.item()
    return x

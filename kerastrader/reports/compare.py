"""Several runs side by side: what a change of model, threshold or data did."""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime
from pathlib import Path

from kerastrader.errors import KerastraderError
from kerastrader.reports import charts
from kerastrader.reports.html import CSS, HEADLINE, fmt, table
from kerastrader.reports.runfiles import read_run

log = logging.getLogger(__name__)

MODEL_KEYS = [("accuracy", "Model accuracy"), ("roc_auc", "Model ROC AUC")]


def _names(run_dirs: list[Path]) -> list[str]:
    """Short unique labels: the directory name, with its parent when names repeat."""
    names = [p.resolve().name for p in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in run_dirs]
    return names


def page_path(out: str | Path) -> Path:
    """Where the page goes: ``out`` itself when it names a file (``cmp.html``), else a folder
    holding ``compare.html`` (``runs/cmp``, or any existing directory)."""
    out = Path(out)
    if out.is_dir() or not out.suffix:
        return out / "compare.html"
    return out


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write one page comparing the runs: a metrics table and interactive equity, drawdown and
    rolling charts; ``out`` is the page or, without a suffix, the folder that holds it."""
    dirs = [Path(d) for d in run_dirs]
    if len(dirs) < 2:
        raise KerastraderError("report compare needs at least two run directories")
    runs = [read_run(d) for d in dirs]
    names = _names(dirs)
    rows = []
    for key, label, kind in HEADLINE:
        rows.append(
            (html.escape(label), *(fmt(r.metrics["strategy"].get(key), kind) for r in runs))
        )
    rows.append(
        (
            "Benchmark, annual return",
            *(fmt(r.metrics["benchmark"].get("annual_return"), "pct") for r in runs),
        )
    )
    for key, label in MODEL_KEYS:
        rows.append((label, *(fmt((r.metrics.get("model") or {}).get(key)) for r in runs)))
    for key in ("start", "end", "bars", "trades", "final_value"):
        rows.append((key, *(fmt(r.metrics["run"].get(key)) for r in runs)))
    rows.append(("in-sample", *(fmt(r.metrics["run"].get("in_sample")) for r in runs)))
    curves = {n: r.returns for n, r in zip(names, runs, strict=True)}
    shortest = min(len(r) for r in curves.values())
    window = 126 if shortest >= 252 else shortest // 4
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = "\n".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>Comparison of {len(runs)} runs</title><style>{CSS}</style>",
            charts.plotly_script(),
            "</head>",
            "<body><main>",
            f"<h1>Comparison of {len(runs)} runs</h1>",
            "<p class='sub'>" + " &middot; ".join(html.escape(str(d)) for d in dirs) + "</p>",
            "<h2>Metrics</h2>",
            table(rows, ("", *names)),
            "<h2>Growth of 1 and drawdowns</h2>",
            charts.chart_block(
                charts.curves_chart(curves),
                "chart-compare-equity",
                "Each run's strategy: growth of 1 and drawdown (click a name to hide it)",
            ),
            "<h2>Rolling metrics</h2>" if window >= 10 else "",
            charts.chart_block(
                charts.rolling_compare_chart(curves, window),
                "chart-compare-rolling",
                f"Rolling Sharpe ratio and volatility over {window} bars",
            )
            if window >= 10
            else "",
            f"<footer>Generated {made} by kerastrader. Charts: "
            f"{html.escape(charts.bundle_name())}, inlined.</footer></main></body></html>",
        ]
    )
    from kerastrader.reports.writer import atomic_write

    out = page_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, page)
    log.info("comparison written to %s", out)
    return out

"""Build report.html from a run's files: the same page after a backtest or on request."""

from __future__ import annotations

import logging
from pathlib import Path

from kerastrader.reports.runfiles import read_run, round_trips

log = logging.getLogger(__name__)


def render_report(run_dir: str | Path, figures: bool | None = None) -> Path:
    """Write ``run_dir/report.html`` from the run's saved files; returns its path.

    ``figures`` None keeps what the run asked for (``report.figures`` in its metrics).
    """
    from kerastrader.models.artifact import library_versions
    from kerastrader.reports import figures as figs
    from kerastrader.reports.html import Page, render
    from kerastrader.reports.writer import atomic_write

    run = read_run(run_dir)
    meta = run.metrics["run"]
    if figures is None:
        figures = bool(meta.get("figures", True))
    values = run.values
    page = Page(
        title=meta.get("title") or f"{meta.get('symbol', '')} backtest",
        symbol=meta.get("symbol", ""),
        metrics=run.metrics,
        returns=run.returns,
        transactions=run.transactions,
        round_trips=round_trips(run.transactions, values),
        config_toml=run.config_toml,
        versions=library_versions(),
    )
    if len(run.returns) > 1:
        page.equity_png = figs.equity_figure(run.returns, run.benchmark)
        page.rolling_pngs = figs.rolling_figures(run.returns, run.benchmark)
        page.exposure_png = figs.exposure_figure(run.returns, run.positions)
    if run.diagnostics is not None:
        page.model_pngs = figs.model_figures(
            run.diagnostics["label"].to_numpy(), run.diagnostics["prediction"].to_numpy()
        )
    if figures and len(run.returns) > 1:
        page.pyfolio_pngs, page.pyfolio_tables = figs.pyfolio_figures(
            run.returns, run.benchmark, run.positions, run.transactions
        )
    path = Path(run_dir) / "report.html"
    atomic_write(path, render(page))
    log.info("report written to %s", path)
    return path

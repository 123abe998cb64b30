"""Build report.html from a run's files: the same page after a backtest or on request."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kerastrader.reports.runfiles import RunFiles, read_run, round_trips

log = logging.getLogger(__name__)

ROLLING_WINDOW = 126  # six months of business days, pyfolio's window


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
        page.exposure_png = figs.exposure_figure(run.returns, run.positions)
    _add_charts(page, run)
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


def _add_charts(page, run: RunFiles) -> None:
    """The interactive charts: equity and drawdowns, rolling metrics, price with fills."""
    from kerastrader.reports import charts

    if len(run.returns) > 1:
        fig = charts.equity_drawdown_chart(run.returns, run.benchmark)
        page.equity_chart = charts.chart_block(
            fig, "chart-equity", "Growth of 1 and drawdowns (drag to zoom, double-click to reset)"
        )
    window = rolling_window(len(run.returns))
    if window:
        fig = charts.rolling_metrics_chart(run.returns, window, run.benchmark)
        page.rolling_chart = charts.chart_block(
            fig, "chart-rolling", f"Rolling Sharpe ratio and volatility over {window} bars"
        )
    symbols = run.metrics["run"].get("symbols") or [run.metrics["run"].get("symbol", "")]
    predictions = read_predictions(run.run_dir, symbols)
    start, end = _period(run)
    closes, why = read_closes(run)
    for i, sym in enumerate(symbols[:4]):  # a chart per instrument, at most four (page size)
        preds = predictions.get(sym)
        if preds is not None:
            preds = preds[(preds.index >= start) & (preds.index <= end)]
        fills = run.transactions
        if "symbol" in fills and len(symbols) > 1:
            fills = fills[fills["symbol"] == sym]
        close = closes.get(sym)
        if close is not None:
            close = close[(close.index >= start) & (close.index <= end)]
        if (preds is None or preds.dropna().empty) and fills.empty and close is None:
            continue
        caption = (
            f"{sym}: close, buys and sells at their fill prices, and the model's prediction "
            "on each bar of the backtest"
            + ("" if close is not None else f" (no close line: {why})")
        )
        fig = charts.price_predictions_chart(close, preds, fills)
        page.price_charts.append(charts.chart_block(fig, f"chart-price-{i}", caption))


def rolling_window(bars: int) -> int:
    """pyfolio's six months when the run has a year of bars, else a quarter of the run."""
    if bars >= 2 * ROLLING_WINDOW:
        return ROLLING_WINDOW
    return bars // 4 if bars >= 40 else 0


def _period(run: RunFiles) -> tuple[pd.Timestamp, pd.Timestamp]:
    if len(run.returns):
        return run.returns.index[0], run.returns.index[-1]
    return pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")


def read_predictions(run_dir: Path, symbols: list[str]) -> dict[str, pd.Series]:
    """predictions.csv as one series per symbol (UTC index); empty when the run wrote none."""
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        return {}
    frame = pd.read_csv(path)
    if frame.empty or "prediction" not in frame:
        return {}
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame["date"], utc=True, format="ISO8601"))
    if "symbol" not in frame:  # one instrument: date,prediction
        return {symbols[0]: frame["prediction"].astype(float)} if symbols else {}
    return {str(s): g["prediction"].astype(float) for s, g in frame.groupby("symbol")}


def read_closes(run: RunFiles) -> tuple[dict[str, pd.Series], str]:
    """The closes the run traded on, read from its data file when that file is still where
    the run recorded it with the same SHA-256 (the provenance in metrics.json); else none,
    and why.

    The run files hold fills and positions but not the bars, and the report never re-runs
    anything: a file that moved or changed is not drawn rather than drawn wrongly.
    """
    from kerastrader.feeds.loader import file_sha256

    data = run.metrics.get("data") or {}
    path, digest = data.get("path"), data.get("sha256")
    symbols = data.get("symbols") or [data.get("symbol")]
    if len(symbols) != 1:
        return {}, "closes are drawn for one-instrument runs only"
    if not path or not digest or not Path(path).is_file():
        return {}, f"the data file {path} is not where the run read it"
    try:
        if file_sha256(path) != digest:
            return {}, f"the data file {path} changed since the run (SHA-256)"
        from kerastrader.feeds.frames import load_any

        options = {"adjust": bool(data.get("adjust"))}
        for key in ("date_format", "missing"):
            if data.get(key):
                options[key] = data[key]
        bars = load_any(path, **options)
    except Exception as exc:  # the chart is an extra: a file the loader now refuses costs it
        log.warning("no close line on the price chart: %s", exc)
        return {}, f"the data file could not be read again ({exc})"
    close = bars["close"].astype(float)
    index = pd.DatetimeIndex(close.index)
    close.index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return {str(symbols[0] or run.metrics["run"].get("symbol", "")): close}, ""

"""Figures as PNG bytes: pyfolio's tear sheets, the equity curve, and model diagnostics.

The Agg backend is selected before pyplot (or Backtrader's plotting, which forces TkAgg) is
imported, so reports render on a machine without a display.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

log = logging.getLogger(__name__)


def png(fig: plt.Figure, dpi: int = 80) -> bytes:
    """Render and close: a report never leaks open figures."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


@contextlib.contextmanager
def captured_pyfolio_tables() -> Iterator[list[str]]:
    """Collect the tables pyfolio sends to IPython's ``display`` as HTML strings.

    pyfolio renders tables with ``IPython.display.display(HTML(...))``; outside a notebook
    that prints ``<IPython.core.display.HTML object>``. pyfolio offers no hook, so for the
    duration of the block the ``display`` name in the two pyfolio modules that import it
    (``utils`` for every table, ``tears`` for a Markdown heading) points to a collector.
    Rebinding a module attribute is narrower than patching ``IPython.display`` itself (a
    notebook's own output is untouched) and sturdier than scraping stdout (the HTML is
    kept, not its repr). The few plain ``print`` calls pyfolio makes (timers, capacity
    notes) are diverted to the debug log so a command's stdout stays its own.
    """
    from kerastrader.reports.stats import import_pyfolio

    pyfolio = import_pyfolio()
    tables: list[str] = []

    def collect(*objs, **_kwargs) -> None:
        for obj in objs:
            data = getattr(obj, "data", obj)
            if isinstance(data, str) and data.lstrip().startswith("<"):
                tables.append(data)
            elif isinstance(data, str):
                tables.append(f"<p>{data}</p>")

    saved = {m: m.display for m in (pyfolio.utils, pyfolio.tears)}
    printed = io.StringIO()
    try:
        for module in saved:
            module.display = collect
        with contextlib.redirect_stdout(printed):
            yield tables
    finally:
        for module, original in saved.items():
            module.display = original
        if printed.getvalue().strip():
            log.debug("pyfolio printed: %s", printed.getvalue().strip())


def pyfolio_figures(
    returns: pd.Series,
    benchmark: pd.Series,
    positions: pd.DataFrame,
    transactions: pd.DataFrame,
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """pyfolio's returns, positions, transactions and round-trip tear sheets, and its tables."""
    from kerastrader.reports.stats import import_pyfolio

    pyfolio = import_pyfolio()

    figures: list[tuple[str, bytes]] = []
    has_txns = len(transactions) > 0
    txns = transactions if has_txns else None
    sheets = [
        (
            "Returns tear sheet",
            lambda: pyfolio.create_returns_tear_sheet(
                returns,
                positions=positions,
                transactions=txns,
                benchmark_rets=benchmark,
                return_fig=True,
            ),
        ),
        (
            "Positions tear sheet",
            lambda: pyfolio.create_position_tear_sheet(
                returns, positions, transactions=txns, return_fig=True
            ),
        ),
    ]
    sheets.append(
        (
            "Interesting times",
            lambda: pyfolio.create_interesting_times_tear_sheet(
                returns, benchmark_rets=benchmark, return_fig=True
            ),
        )
    )
    if has_txns:
        sheets.append(
            (
                "Transactions tear sheet",
                lambda: pyfolio.create_txn_tear_sheet(
                    returns, positions, transactions, return_fig=True
                ),
            )
        )
        sheets.append(
            (
                "Round trips tear sheet",
                lambda: pyfolio.create_round_trip_tear_sheet(
                    returns, positions, transactions, return_fig=True
                ),
            )
        )
    before = set(plt.get_fignums())  # a caller's own figures (a notebook's) stay open

    def close_new() -> None:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)

    # pyfolio and pandas warn about deprecated pandas idioms and empty slices on every call:
    # noise to a reader of a finished report, so warnings are silenced for these calls only.
    with captured_pyfolio_tables() as tables, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for title, make in sheets:
            try:
                fig = make()
            except Exception as exc:  # pyfolio raises on degenerate inputs (no round trips...)
                log.info("pyfolio %s skipped: %s", title.lower(), exc)
                close_new()
                continue
            if fig is not None:
                figures.append((title, png(fig, dpi=60)))
            close_new()
    return figures, tables


def model_figures(y_true: np.ndarray, y_prob: np.ndarray) -> list[tuple[str, bytes]]:
    """ROC curve, confusion matrix and the distribution of predicted probabilities."""
    from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

    out: list[tuple[str, bytes]] = []
    y_true = np.asarray(y_true, dtype=int).ravel()
    y_prob = np.asarray(y_prob, dtype=float).ravel()
    if not len(y_true):
        return out
    if len(np.unique(y_true)) == 2:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        RocCurveDisplay.from_predictions(y_true, y_prob, ax=ax, name="model")
        ax.plot([0, 1], [0, 1], "--", color="#999999", label="chance")
        ax.legend(loc="lower right")
        out.append(("ROC curve", png(fig)))
    if len(np.unique(y_true)) == 2:
        from sklearn.calibration import CalibrationDisplay

        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        CalibrationDisplay.from_predictions(
            y_true, y_prob, n_bins=10, strategy="quantile", ax=ax, name="model"
        )
        ax.set_title("calibration (deciles of prediction)")
        out.append(("Calibration curve", png(fig)))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        (y_prob > 0.5).astype(int),
        labels=[0, 1],
        display_labels=["down/flat", "up"],
        ax=ax,
        colorbar=False,
        cmap="Blues",
    )
    out.append(("Confusion matrix (threshold 0.5)", png(fig)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(min(y_prob.min(), 0.4), max(y_prob.max(), 0.6), 41)
    ax.hist(y_prob[y_true == 1], bins=bins, alpha=0.6, label="next bar up")
    ax.hist(y_prob[y_true == 0], bins=bins, alpha=0.6, label="next bar down/flat")
    ax.set_xlabel("predicted probability of up")
    ax.legend()
    out.append(("Predicted probabilities", png(fig)))
    return out


def _pyfolio_plot(title: str, figsize: tuple[float, float], draw) -> bytes | None:
    """One of pyfolio's single plots, or None (logged) when pyfolio cannot draw this input.

    These plots are extras: a pyfolio failure on an odd series must not cost the whole report.
    """
    fig, ax = plt.subplots(figsize=figsize)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            draw(ax)
    except Exception as exc:
        plt.close(fig)
        log.warning("figure %r skipped: %s", title, exc)
        return None
    return png(fig)


def exposure_figure(returns: pd.Series, positions: pd.DataFrame) -> bytes | None:
    """Long, short and net exposure as a fraction of the portfolio (pyfolio's plot)."""
    from kerastrader.reports.stats import import_pyfolio

    plotting = import_pyfolio().plotting
    if positions.empty:
        return None
    return _pyfolio_plot(
        "exposure", (10, 3.2), lambda ax: plotting.plot_exposures(returns, positions, ax=ax)
    )

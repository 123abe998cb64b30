"""The study page: the original's settings and reported numbers, the faithful reproduction and
the honest run in three columns, then each mistake's and variant's own runs.

Built only from files in the study's output folder (``study.toml``, ``study.json`` and each
run's ``metrics.json``, ``study.json``, ``config.toml``), never from memory, so a page rebuilt
later shows what the runs wrote. Every number cell carries ``data-file`` and ``data-key``: the
file and the dotted key it was read from, so a test (and a sceptical reader) can check it.
"""

from __future__ import annotations

import html
import json
import logging
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kerastrader.errors import KerastraderError
from kerastrader.reports import charts
from kerastrader.reports.html import CSS

log = logging.getLogger(__name__)

PAGE = "study.html"

#: (dotted key in the run's files, label, format). "model." and "strategy."/"benchmark."/"run."
#: keys come from metrics.json, "original_accounting." keys from the run's study.json.
SECTIONS: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "Model, out of sample",
        [
            ("model.accuracy", "Test accuracy", "pct"),
            ("model.balanced_accuracy", "Balanced accuracy", "pct"),
            ("model.roc_auc", "ROC AUC", "num"),
            ("model.n_test", "Test bars", "int"),
            ("model.test_start", "Test period from", "text"),
            ("model.test_end", "Test period to", "text"),
        ],
    ),
    (
        "The original's arithmetic on the same predictions (no costs, filled at the close)",
        [
            ("original_accounting.sum_of_returns", "Sum of the returns (the 'profit')", "pct"),
            ("original_accounting.stats.cumulative_returns", "Cumulative return", "pct"),
            ("original_accounting.stats.annual_return", "Annual return", "pct"),
            ("original_accounting.stats.annual_volatility", "Annual volatility", "pct"),
            ("original_accounting.stats.sharpe_ratio", "Sharpe ratio", "num"),
            ("original_accounting.stats.max_drawdown", "Max drawdown", "pct"),
            ("original_accounting.stats.daily_value_at_risk", "Daily value at risk", "pct"),
            ("original_accounting.hit_rate", "Bars with a gain", "pct"),
            ("original_accounting.long_share", "Bars long", "pct"),
            ("original_accounting.blocks.positive_share", "Blocks with a profit", "pct"),
            ("original_accounting.blocks.p05", "Block profit, 5th percentile", "pct"),
            ("original_accounting.blocks.median", "Block profit, median", "pct"),
            ("original_accounting.blocks.p95", "Block profit, 95th percentile", "pct"),
        ],
    ),
    (
        "kerastrader backtest (next-open fills, the run's costs, total return)",
        [
            ("strategy.cumulative_returns", "Cumulative return", "pct"),
            ("strategy.annual_return", "Annual return", "pct"),
            ("strategy.annual_volatility", "Annual volatility", "pct"),
            ("strategy.sharpe_ratio", "Sharpe ratio", "num"),
            ("strategy.max_drawdown", "Max drawdown", "pct"),
            ("strategy.daily_value_at_risk", "Daily value at risk", "pct"),
            ("benchmark.cumulative_returns", "Benchmark cumulative return", "pct"),
            ("benchmark.sharpe_ratio", "Benchmark Sharpe ratio", "num"),
            ("run.trades", "Trades", "int"),
            ("run.rejections", "Orders the broker refused (sent again next bar)", "int"),
            ("run.final_value", "Final value", "money"),
            ("run.look_ahead", "Look-ahead from data repair", "text"),
            ("run.in_sample", "Backtest in sample", "text"),
        ],
    ),
]

#: Columns of the mistakes' and variants' tables.
GROUP_KEYS = [
    ("model.accuracy", "Accuracy", "pct"),
    ("model.roc_auc", "ROC AUC", "num"),
    ("original_accounting.stats.annual_return", "Original's annual return", "pct"),
    ("original_accounting.stats.sharpe_ratio", "Original's Sharpe", "num"),
    ("strategy.cumulative_returns", "Backtest cumulative", "pct"),
    ("strategy.sharpe_ratio", "Backtest Sharpe", "num"),
    ("run.trades", "Trades", "int"),
]

STUDY_CSS = """
td.text{text-align:left}td.na{color:#999}.flag{color:#a40000;font-weight:bold}
table.study td,table.study th{vertical-align:top;max-width:330px}
"""


def fmt_value(value: Any, kind: str) -> str:
    """A value as the page shows it (the test formats the file's value the same way)."""
    if value is None:
        return "n/a"
    if kind == "text" or isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if kind == "pct":
        return f"{float(value):.2%}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{float(value):,.2f}"
    return f"{float(value):.3f}"


def lookup(doc: dict[str, Any], dotted: str) -> Any:
    """``doc["a"]["b"]`` for ``"a.b"``; None when any part is missing."""
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def value_cell(value: Any, kind: str, file: str, key: str) -> str:
    """A number's ``<td>``, naming the file and dotted key it was read from (``data-file``,
    ``data-key``, ``data-kind``). Every study and forecast page writes its numbers this way, so
    one test checks any of those pages' numbers against their files."""
    text = html.escape(fmt_value(value, kind))
    cls = "na" if value is None else ("text" if kind == "text" else "num")
    return (
        f'<td class="{cls}" data-file="{html.escape(file)}" data-key="{html.escape(key)}" '
        f'data-kind="{kind}">{text}</td>'
    )


def original_cell(numbers: dict[str, Any], key: str, kind: str) -> str:
    """A number the original reports (``[original.numbers]`` of study.toml, keyed as the
    page's row) as a cell that names where it came from."""
    return value_cell(numbers.get(key), kind, "study.toml", f"original.numbers.{key}")


class RunFiles:
    """One run of a study, its files read once: the result file ``RESULT`` (a run that did not
    finish has none: one clear line), ``study.json`` (role, label, what) and ``config.toml``.
    A study kind subclasses it to say which file a key is read from and what the link opens."""

    RESULT = "metrics.json"
    PAGE = "report.html"
    LINK = "report"

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.folder = root / name
        if not (self.folder / self.RESULT).is_file():
            raise KerastraderError(f"{self.folder}: no {self.RESULT} (the run did not finish)")
        self.result = json.loads((self.folder / self.RESULT).read_text())
        self.study = json.loads((self.folder / "study.json").read_text())
        self.config = tomllib.loads((self.folder / "config.toml").read_text())

    def source(self, key: str) -> tuple[str, dict[str, Any]]:
        """The file (relative to the study's folder) a dotted key is read from, and its doc."""
        return f"{self.name}/{self.RESULT}", self.result

    def cell(self, key: str, kind: str) -> str:
        file, doc = self.source(key)
        return value_cell(lookup(doc, key), kind, file, key)

    @property
    def link(self) -> str:
        n = html.escape(self.name)
        return f'<a href="{n}/{self.PAGE}">{n} {self.LINK}</a>'


class _Run(RunFiles):
    """A backtest run: metrics.json, and the original's arithmetic in its study.json."""

    @property
    def metrics(self) -> dict[str, Any]:
        return self.result

    def source(self, key: str) -> tuple[str, dict[str, Any]]:
        if key.startswith("original_accounting."):
            return f"{self.name}/study.json", self.study
        return super().source(key)


def page_start(st: dict[str, Any], css: str = STUDY_CSS) -> list[str]:
    """The page's head (styles, plotly.js inlined once) and its title, source and summary
    from the ``[study]`` table of study.toml."""
    return [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(st.get('title', 'Study'))}</title>",
        f"<style>{CSS}{css}</style>",
        charts.plotly_script(),
        "</head><body><main>",
        f"<h1>{html.escape(st.get('title', ''))}</h1>",
        f"<p class='sub'>{html.escape(st.get('source', ''))}</p>",
        f"<p>{html.escape(st.get('summary', ''))}</p>",
    ]


def overrides_warning(index: dict[str, Any]) -> list[str]:
    """A warning when every run was shrunk by ``--set`` (its numbers are not the study's)."""
    if not index.get("overrides"):
        return []
    return [
        "<p class='warn'>Every run was changed by: "
        + html.escape(", ".join(index["overrides"]))
        + " (a shrunk run: its numbers are not the study's).</p>"
    ]


def settings_rows(
    original: dict[str, Any], texts: list[dict[str, str]], whats: list[str]
) -> list[str]:
    """The side-by-side table's first rows: each of the original's settings beside the runs'
    own words for it (``texts``, one dict per column), then what each column is."""
    rows = []
    for topic, text in original.get("settings", {}).items():
        cells = f"<td class='text'>{html.escape(str(text))}</td>" + "".join(
            f"<td class='text'>{html.escape(t.get(topic, ''))}</td>" for t in texts
        )
        rows.append(f"<tr><th>{html.escape(topic)}</th>{cells}</tr>")
    rows.append(
        f"<tr><th>What it is</th><td class='text'>{html.escape(original.get('notes', ''))}</td>"
        + "".join(f"<td class='text'>{html.escape(w)}</td>" for w in whats)
        + "</tr>"
    )
    return rows


def runs_table(runs: list[RunFiles], keys: list[tuple[str, str, str]]) -> str:
    """One row per run: its label and what it is, ``keys``' cells, the link to its own page."""
    header = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in keys)
    body = [
        f"<tr><th class='text'>{html.escape(run.study['label'])}<br>"
        f"<span class='note'>{html.escape(run.study['what'])}</span></th>"
        + "".join(run.cell(k, kind) for k, _, kind in keys)
        + f"<td class='text'>{run.link}</td></tr>"
        for run in runs
    ]
    return (
        f"<table class='study'><thead><tr><th>Run</th>{header}<th></th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def settings_text(run: _Run) -> dict[str, str]:
    """The run's choices in the words of the original's settings rows."""
    c, r = run.config, run.study["reproduces"]
    m, t, s, b = c["model"], c["training"], c["split"], c["broker"]
    split = (
        f"train to {s['train_end']}, validation to {s['validation_end']}, test after"
        if s["train_end"]
        else f"chronological fractions: train {s['train_fraction']:g}, validation "
        f"{s['validation_fraction']:g}, test the rest"
    )
    look = r["look_ahead_features"]
    feats = ", ".join(c["features"]["names"])
    if c["selection"]["method"]:
        feats = f"{c['selection']['method']} on training rows, from: {feats}"
    stop = (
        "EarlyStopping on the TRAINING loss (the validation period never chooses)"
        if r["early_stopping_on"] == "loss"
        else "EarlyStopping on the validation loss, best weights restored"
    )
    tuning = "none"
    if r["tuning"]:
        tuning = f"{r['tuning']}, trials scored on the " + (
            "TRAINING windows" if r["tuning_scored_on"] == "training" else "validation period"
        )
    st = c["strategy"]
    side = "long/short" if st["allow_short"] else "long/flat"
    return {
        "data": f"{run.metrics['data'].get('path', '')} ({c['data']['missing']} for empty cells)",
        "features": feats + (f" (LOOK-AHEAD: {', '.join(look)})" if look else ""),
        "label": "INVERTED: 1 when Close[t] > Close[t+1] (pct_change(-1) > 0)"
        if r["label_inverted"]
        else "1 when Close[t+1] > Close[t]",
        "split": split,
        "model": f"{m['kind']} units {m['units']}, dropout {m['dropout']:g}, "
        f"{m['activation']}, window {m['window']}, lr {m['learning_rate']:g}",
        "training": f"{t['epochs']} epochs max, batch {t['batch_size']}, patience {t['patience']}; "
        f"{stop}; class weights {'on' if t['class_weights'] else 'off'}",
        "tuning": tuning,
        "strategy": f"{side}, enter > {st['enter']:g}, exit < {st['exit']:g}, fill at next open",
        "costs": f"commission {b['commission']:.2%} of value, slippage {b['slippage_bps']:g} bps"
        if b["commission"] or b["slippage_bps"]
        else "none",
        "accounting": run.study["original_accounting"]["accounting"],
    }


def render(root: Path) -> str:
    """The page's HTML from the files in ``root``."""
    spec = tomllib.loads((root / "study.toml").read_text())
    index = json.loads((root / "study.json").read_text())
    runs = {name: _Run(root, name) for name in index["runs"]}
    by_role: dict[str, list[_Run]] = {}
    for run in runs.values():
        by_role.setdefault(run.study["role"], []).append(run)
    main = [by_role.get("faithful", [None])[0], by_role.get("honest", [None])[0]]
    original = spec["original"]
    numbers = original.get("numbers", {})
    st = spec["study"]
    parts = page_start(st)
    data = index["data"]
    parts.append(
        "<p class='note'>Data: "
        + html.escape(f"{data.get('path')} (SHA-256 {str(data.get('sha256'))[:12]}...)")
        + (
            html.escape(
                f", cut from {data['source']} to {data.get('start')} .. {data.get('end')}"
                f", {data.get('rows')} rows, {data.get('empty_cells')} empty cells"
            )
            if data.get("start") or data.get("end")
            else ""
        )
        + (
            html.escape(f"; bar store {data['store']} ({data.get('symbol')})")
            if data.get("store")
            else ""
        )
        + "</p>"
    )
    parts += overrides_warning(index)
    head = ["<th></th><th>Original (reported)</th>"]
    for run in main:
        if run is not None:
            head.append(f"<th>{html.escape(run.study['label'])}<br>{run.link}</th>")
    parts.append("<h2>Side by side</h2>")
    parts.append(
        "<p class='note'>Original: the settings and numbers the source reports "
        "(../shared/STUDIES.md). Faithful: the source's choices, each an explicit option. "
        "Honest: kerastrader's defaults. Every number below is read from the run's files "
        "(hover a cell's data-file).</p>"
    )
    rows = settings_rows(
        original,
        [settings_text(r) if r else {} for r in main],
        [r.study["what"] for r in main if r],
    )
    for title, keys in SECTIONS:
        span = 1 + len(head)
        rows.append(f"<tr><th colspan='{span}' class='text'>{html.escape(title)}</th></tr>")
        for key, label, kind in keys:
            if all(r is None or lookup(r.source(key)[1], key) is None for r in main) and (
                key not in numbers
            ):
                continue
            cells = [original_cell(numbers, key, kind)]
            cells += [r.cell(key, kind) for r in main if r is not None]
            rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    parts.append(
        f"<table class='study'><thead><tr>{''.join(head)}</tr></thead><tbody>"
        f"{''.join(rows)}</tbody></table>"
    )

    parts.extend(_equity_chart(root, runs, main))

    groups: dict[str, list[_Run]] = {}
    for run in runs.values():
        if run.study["role"] in ("mistake", "variant"):
            groups.setdefault(run.study["group"] or run.study["role"], []).append(run)
    honest = main[1]
    for group, members in groups.items():
        parts.append(f"<h2>{html.escape(group)}</h2>")
        parts.append(runs_table(([honest] if honest else []) + members, GROUP_KEYS))
    parts.append(
        f"<footer>Built {datetime.now(UTC).isoformat(timespec='seconds')} from the files in "
        f"this folder by kerastrader.studies.page; rebuild with "
        f"<code>kerastrader study --page {html.escape(str(root))}</code>.</footer>"
    )
    parts.append("</main></body></html>")
    return "".join(parts)


def _equity_chart(root: Path, runs: dict[str, _Run], main: list[_Run | None]) -> list[str]:
    """Every run's backtest as growth of 1 and drawdown, read from its returns.csv; the
    faithful and honest runs and the honest run's benchmark drawn, the others a click away."""
    import pandas as pd

    curves: dict[str, pd.Series] = {}
    benchmark = None
    for run in runs.values():
        path = root / run.name / "returns.csv"
        if not path.is_file():
            continue
        frame = pd.read_csv(path, index_col="date")
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True, format="ISO8601"))
        if len(frame) < 2:
            continue
        label = run.study["label"]
        curves[label if label not in curves else f"{label} ({run.name})"] = frame["strategy"]
        if run is main[1] or (benchmark is None and "benchmark" in frame):
            benchmark = frame["benchmark"].astype(float)
    if not curves:
        return []
    if benchmark is not None:
        curves["Benchmark (honest run's)"] = benchmark
    shown = {r.study["label"] for r in main if r is not None} | {"Benchmark (honest run's)"}
    fig = charts.curves_chart(curves, "Backtests: growth of 1 and drawdowns", shown=shown)
    return [
        "<h2>Backtests</h2>",
        charts.chart_block(
            fig, "chart-study-equity", "Each run's kerastrader backtest from its returns.csv "
            "(next-open fills, the run's costs); click a legend entry to show or hide a run",
        ),
    ]  # fmt: skip


def study_kind(root: Path) -> str:
    """The study's kind as its ``study.json`` records it: ``"forecast"`` for a study whose runs
    are forecasts (study D), else ``"backtest"``; the two have different pages."""
    index = root / "study.json"
    if not index.is_file():
        raise KerastraderError(f"{root}: no study.json (not a study's folder)")
    return str(json.loads(index.read_text()).get("kind", "backtest"))


def write_page(root: str | Path) -> Path:
    """(Re)write ``<root>/study.html`` from the study's files, with the page builder of the
    study's kind (a forecast study's page is :mod:`kerastrader.forecast.study_page`), so one
    call rebuilds any study's page."""
    root = Path(root)
    if study_kind(root) == "forecast":
        from kerastrader.forecast.study_page import write_page as write_forecast_page

        return write_forecast_page(root)
    out = root / PAGE
    out.write_text(render(root))
    return out

"""Study D's page: the original's settings and number, the faithful forecast, the honest one.

Built only from the files in the study's folder (``study.toml``, ``study.json``, each run's
``forecast.json``, ``config.toml``, ``study.json`` and its CSVs for the charts). Every number
cell carries ``data-file`` / ``data-key`` / ``data-kind`` as the other study pages do, so the
same test checks every number against its file.
"""

from __future__ import annotations

import html
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from kerastrader.forecast.page import fan_figure
from kerastrader.studies.page import (
    RunFiles,
    original_cell,
    overrides_warning,
    page_start,
    runs_table,
    settings_rows,
)

PAGE = "study.html"

SECTIONS: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "What the model learns from",
        [
            ("book.periods", "Periods of history", "int"),
            ("history.annual_return", "History: annual return (geometric)", "pct"),
            ("history.annual_volatility", "History: annual volatility", "pct"),
        ],
    ),
    (
        "The forecast, 30 years ahead",
        [
            ("assumption.annual_return", "Expected return of the assumptions", "pct"),
            ("forecast.point_annual_return", "Point path: annual return", "pct"),
            ("forecast.point_first_return", "Point path: first period's return", "pct"),
            ("forecast.point_last_return", "Point path: last period's return", "pct"),
            ("forecast.years.y30.point", "Value of 1 after 30 years: point path", "num"),
            ("forecast.years.y30.model.p05", "... model bootstrap, 5th percentile", "num"),
            ("forecast.years.y30.model.p50", "... model bootstrap, median", "num"),
            ("forecast.years.y30.model.p95", "... model bootstrap, 95th percentile", "num"),
            ("forecast.years.y30.iid.p05", "... naive bootstrap, 5th percentile", "num"),
            ("forecast.years.y30.iid.p50", "... naive bootstrap, median", "num"),
            ("forecast.years.y30.iid.p95", "... naive bootstrap, 95th percentile", "num"),
            ("forecast.years.y30.assumption", "... the assumptions' fixed return", "num"),
            ("forecast.model_median_annual", "Model bootstrap: median annual return", "pct"),
            ("forecast.iid_median_annual", "Naive bootstrap: median annual return", "pct"),
        ],
    ),
    (
        "The forecaster backtested (rolling origin; error = forecast - actual cumulative return)",
        [
            ("rolling.origins", "Origins (a refit at each)", "int"),
            ("rolling.years.y1.point_mae", "1 year ahead: MAE of the point path", "pct"),
            ("rolling.years.y1.model_p50_mae", "1 year ahead: MAE of the model's median", "pct"),
            ("rolling.years.y1.iid_p50_mae", "1 year ahead: MAE of the naive median", "pct"),
            ("rolling.years.y1.assumption_mae", "1 year ahead: MAE of the assumptions", "pct"),
            ("rolling.years.y1.model_coverage", "1 year ahead: model band coverage", "pct"),
            ("rolling.years.y1.iid_coverage", "1 year ahead: naive band coverage", "pct"),
            ("rolling.years.y5.point_mae", "5 years ahead: MAE of the point path", "pct"),
            ("rolling.years.y5.iid_p50_mae", "5 years ahead: MAE of the naive median", "pct"),
            ("rolling.years.y5.assumption_mae", "5 years ahead: MAE of the assumptions", "pct"),
            ("rolling.years.y5.model_coverage", "5 years ahead: model band coverage", "pct"),
            ("rolling.years.y5.iid_coverage", "5 years ahead: naive band coverage", "pct"),
        ],
    ),
    (
        "The model",
        [
            ("model.parameters", "Parameters", "int"),
            ("model.train_windows", "Training windows", "int"),
            ("model.validation_windows", "Validation windows", "int"),
            ("model.train_rmse", "Training RMSE (per period)", "pct"),
            ("model.validation_rmse", "Validation RMSE (per period)", "pct"),
            ("model.residual_sd", "Residuals bootstrapped: standard deviation", "pct"),
        ],
    ),
]

GROUP_KEYS = [
    ("forecast.point_annual_return", "Point path a year", "pct"),
    ("forecast.years.y30.point", "Point, 30 y", "num"),
    ("forecast.years.y30.model.p05", "Model p05, 30 y", "num"),
    ("forecast.years.y30.model.p50", "Model p50, 30 y", "num"),
    ("forecast.years.y30.model.p95", "Model p95, 30 y", "num"),
    ("forecast.years.y30.iid.p50", "Naive p50, 30 y", "num"),
    ("rolling.years.y1.point_mae", "MAE point, 1 y", "pct"),
    ("rolling.years.y1.iid_p50_mae", "MAE naive, 1 y", "pct"),
    ("rolling.years.y1.model_coverage", "Model coverage, 1 y", "pct"),
]


class _Run(RunFiles):
    """One forecast run's files: every number is read from its forecast.json."""

    RESULT = "forecast.json"
    PAGE = "forecast.html"
    LINK = "forecast page"

    @property
    def doc(self) -> dict:
        return self.result

    def settings(self) -> dict[str, str]:
        """The run's choices in the words of the original's settings rows."""
        c, d = self.config, self.doc
        m, t, f, r, b = c["model"], c["training"], c["forecast"], c["rolling"], d["book"]
        val = t["validation_fraction"]
        return {
            "data": b.get("describe", ""),
            "returns": f"{b['frequency']} {c['periods']['series']} returns, {b['first']} .. "
            f"{b['last']}",
            "model": f"{m['kind']} units {m['units']}, {m['activation']}, dropout "
            f"{m['dropout']:g}, inputs {'z-scored on the training rows' if m['scale'] == 'standard' else 'raw'}",  # noqa: E501
            "windows": f"{m['window']} periods predict the next (causal windows)",
            "training": f"Adam lr {m['learning_rate']:g}, MSE, up to {t['epochs']} epochs, batch "
            f"{t['batch_size']}; "
            + (
                f"the last {val:.0%} of the windows choose the epoch (patience {t['patience']})"
                if val
                else "no validation: every epoch on every window"
            ),
            "forecast": f"{f['horizon']} periods: the recursive point path, and {f['paths']} "
            f"paths of the recursion with residuals ({d['model']['residuals_from']} windows) "
            f"bootstrapped, beside {f['paths']} naive i.i.d. bootstrap paths",
            "evaluation": f"rolling origins every {r['step']} periods from period {r['first']},"
            f" the model refitted at each, scored 1 .. {r['horizon']} periods ahead"
            if r["horizon"]
            else "none",
        }


def render(root: Path) -> str:
    """The page's HTML from the files in ``root``."""
    from kerastrader.reports.charts import chart_block

    spec = tomllib.loads((root / "study.toml").read_text())
    index = json.loads((root / "study.json").read_text())
    runs = [_Run(root, n) for n in index["runs"]]
    by_role: dict[str, _Run] = {}
    for run in runs:
        by_role.setdefault(run.study["role"], run)
    main = [r for r in (by_role.get("faithful"), by_role.get("honest")) if r is not None]
    st, original = spec["study"], spec["original"]
    numbers = original.get("numbers", {})
    parts = page_start(st) + overrides_warning(index)
    head = "<th></th><th>Original (reported)</th>" + "".join(
        f"<th>{html.escape(r.study['label'])}<br>{r.link}</th>" for r in main
    )
    rows = settings_rows(original, [r.settings() for r in main], [r.study["what"] for r in main])
    span = 2 + len(main)
    for title, keys in SECTIONS:
        rows.append(f"<tr><th colspan='{span}' class='text'>{html.escape(title)}</th></tr>")
        for key, label, kind in keys:
            rows.append(
                f"<tr><th>{html.escape(label)}</th>{original_cell(numbers, key, kind)}"
                + "".join(r.cell(key, kind) for r in main)
                + "</tr>"
            )
    parts.append("<h2>Side by side</h2>")
    parts.append(
        "<p class='note'>Original: the settings and the number the source reports "
        "(../shared/STUDIES.md). Faithful: the source's choices. Honest: the real book, "
        "bands and a backtest of the forecaster. Every number is read from the run's "
        "forecast.json (a cell's data-file and data-key).</p>"
    )
    parts.append(
        f"<table class='study'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    findings = st.get("findings", [])
    if findings:
        parts.append("<h2>What made the difference</h2><ul>")
        parts += [f"<li>{html.escape(text)}</li>" for text in findings]
        parts.append("</ul>")
    for i, run in enumerate(main):
        fig = fan_figure(run.folder, run.doc)
        parts.append(f"<h2>{html.escape(run.study['label'])}</h2>")
        parts.append(chart_block(fig, f"fan_{i}", "Shaded: the model's bootstrap bands; dashed: "
                                 "the recursive point path (the article's forecast); dotted: the "
                                 "naive bootstrap and the assumptions' fixed return."))  # fmt: skip
    parts.append("<h2>Every run</h2>")
    parts.append(runs_table(runs, GROUP_KEYS))
    parts.append(
        f"<footer>Built {datetime.now(UTC).isoformat(timespec='seconds')} from the files in "
        "this folder by kerastrader.forecast.study_page.</footer></main></body></html>"
    )
    return "".join(parts)


def write_page(root: str | Path) -> Path:
    """(Re)write ``<root>/study.html`` from the study's files."""
    root = Path(root)
    out = root / PAGE
    out.write_text(render(root))
    return out

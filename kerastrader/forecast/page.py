"""The forecast page: the fan chart, the forecast at a few horizons, the forecaster's backtest.

Built only from the files of the forecast's folder (``forecast.json``, ``forecast.csv``,
``returns.csv``), never from memory. Every number cell names the file and dotted key it was
read from (``data-file``, ``data-key``, ``data-kind``), as the study pages do, so a test and a
reader can check it. The fan chart is drawn by :func:`kerastrader.reports.charts.fan_chart`
with plotly.js inlined once: the page opens offline and fetches nothing.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.reports.html import CSS
from kerastrader.studies.page import lookup, value_cell

PAGE = "forecast.html"
HISTORY = "history (1 at the origin)"
SOURCE = "forecast.json"

PAGE_CSS = """
td.text{text-align:left}td.na{color:#999}
table.forecast td,table.forecast th{vertical-align:top}
figure.chart{margin:8px 0}
"""


def number_cell(doc: dict[str, Any], file: str, key: str, kind: str) -> str:
    """A ``<td>`` with the value of ``key`` in ``doc`` and where it came from."""
    return value_cell(lookup(doc, key), kind, file, key)


def fan_figure(root: Path, doc: dict[str, Any]) -> Any:
    """The fan chart: the book's history (value 1 at the origin), the model's bands and
    median, the point path, the naive bootstrap's median and band, the assumptions' line."""
    from kerastrader.reports.charts import fan_chart

    table = pd.read_csv(root / "forecast.csv", parse_dates=["date"]).set_index("date")
    pct = doc["forecast"]["percentiles"]
    bands = pd.DataFrame({p: table[f"model_p{int(p):02d}"] for p in pct}, index=table.index)
    returns = pd.read_csv(root / "returns.csv", parse_dates=["date"]).set_index("date")
    growth = np.cumprod(1.0 + returns["portfolio"].to_numpy())
    history = pd.Series(growth / growth[-1], index=returns.index)
    lo, hi = f"p{int(pct[0]):02d}", f"p{int(pct[-1]):02d}"
    lines = {
        "naive bootstrap median": table["iid_p50"],
        f"naive bootstrap {lo}": table[f"iid_{lo}"],
        f"naive bootstrap {hi}": table[f"iid_{hi}"],
        f"assumptions: {doc['assumption']['annual_return']:.1%} a year": table["assumption"],
        HISTORY: history,
    }
    title = f"Value of 1 invested at {doc['forecast']['origin']}"
    fig = fan_chart(bands, table["point"], lines, title=title, y_title="value (log scale)")
    fig.update_traces(selector={"name": HISTORY}, line={"color": "#222222", "dash": "solid"})
    fig.update_traces(selector={"name": "median"}, name="model bootstrap median")
    naive = {"color": "#888888", "dash": "dot", "width": 1}
    for name in (f"naive bootstrap {lo}", f"naive bootstrap {hi}"):
        fig.update_traces(selector={"name": name}, line=naive)
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.08, "x": 0},
                      margin={"t": 50, "b": 90}, height=520)  # fmt: skip
    fig.update_yaxes(type="log")
    return fig


def render(root: Path) -> str:
    """The page's HTML from the files in ``root``."""
    from kerastrader.reports.charts import chart_block, plotly_script

    doc = json.loads((root / SOURCE).read_text())
    pct = doc["forecast"]["percentiles"]
    keys = [f"p{int(p):02d}" for p in pct]

    def c(key: str, kind: str) -> str:
        return number_cell(doc, SOURCE, key, kind)

    fig = fan_figure(root, doc)
    b = doc["book"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(doc['title'])}</title>",
        f"<style>{CSS}{PAGE_CSS}</style>",
        plotly_script(),
        "</head><body><main>",
        f"<h1>{html.escape(doc['title'])}</h1>",
        f"<p class='sub'>{html.escape(b.get('describe', ''))}</p>",
        "<p class='note'>Learnt from "
        + html.escape(
            f"{b['periods']} {b['frequency']} returns, {b['first']} .. {b['last']}"
            + (f" ({b['path']})" if b.get("path") else "")
        )
        + ". Files: "
        + " ".join(
            f"<a href='{html.escape(f)}'>{html.escape(f)}</a>" for f in doc["files"].values()
        )
        + "</p>",
        chart_block(
            fig,
            "fan",
            "Shaded: the model's residual-bootstrap bands ("
            + ", ".join(keys)
            + "); dashed: its recursive point path; dotted: the naive i.i.d. bootstrap's median "
            "and outer band, the assumptions' fixed return, the book's own history.",
        ),
    ]
    parts.append("<h2>Summary</h2><table class='forecast'><tbody>")
    rows = [
        ("History: annual return (geometric)", "history.annual_return", "pct"),
        ("History: annual volatility", "history.annual_volatility", "pct"),
        ("Point path: annual return over the horizon", "forecast.point_annual_return", "pct"),
        ("Point path: first period's return", "forecast.point_first_return", "pct"),
        (
            "Point path: last period's return (where the recursion settles)",
            "forecast.point_last_return",
            "pct",
        ),  # fmt: skip
        ("Model bootstrap: median annual return", "forecast.model_median_annual", "pct"),
        ("Naive bootstrap: median annual return", "forecast.iid_median_annual", "pct"),
        ("Assumptions: expected annual return", "assumption.annual_return", "pct"),
        ("Horizon (periods)", "forecast.horizon", "int"),
        ("Paths per method", "forecast.paths", "int"),
    ]
    for label, key, kind in rows:
        parts.append(f"<tr><th>{html.escape(label)}</th>{c(key, kind)}</tr>")
    parts.append("</tbody></table>")

    parts.append("<h2>Value of 1 at each horizon</h2>")
    head = (
        "<th>Horizon</th><th>Years</th><th>Point path</th>"
        + "".join(f"<th>Model {k}</th>" for k in keys)
        + "".join(f"<th>Naive {k}</th>" for k in keys)
        + "<th>Assumptions</th>"
    )
    body = []
    for hk in doc["forecast"]["at"]:
        base = f"forecast.at.{hk}"
        body.append(
            "<tr>"
            + c(f"{base}.h", "int")
            + c(f"{base}.years", "num")
            + c(f"{base}.point", "num")
            + "".join(c(f"{base}.model.{k}", "num") for k in keys)
            + "".join(c(f"{base}.iid.{k}", "num") for k in keys)
            + c(f"{base}.assumption", "num")
            + "</tr>"
        )
    parts.append(
        f"<table class='forecast'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
        "</tbody></table>"
    )

    r = doc["rolling"]
    parts.append("<h2>The forecaster backtested (rolling origin)</h2>")
    if not r.get("origins"):
        parts.append("<p class='note'>No rolling-origin evaluation (rolling.horizon = 0 or "
                     "too little history).</p>")  # fmt: skip
    else:
        parts.append(
            "<p class='note'>The model refitted at each origin on the periods up to it, every "
            "forecast scored on the cumulative return the book then earned; error = forecast "
            "- actual (cumulative return); coverage = share of actuals inside the outer "
            "band.</p><table class='forecast'><tbody>"
            + f"<tr><th>Origins</th>{c('rolling.origins', 'int')}</tr>"
            + f"<tr><th>First origin</th>{c('rolling.first_origin', 'text')}</tr>"
            + f"<tr><th>Last origin</th>{c('rolling.last_origin', 'text')}</tr>"
            + "</tbody></table>"
        )
        cols = [
            ("origins", "Origins scored", "int"),
            ("point_mae", "MAE point path", "pct"),
            ("model_p50_mae", "MAE model median", "pct"),
            ("iid_p50_mae", "MAE naive median", "pct"),
            ("assumption_mae", "MAE assumptions", "pct"),
            ("point_bias", "Bias point path", "pct"),
            ("iid_p50_bias", "Bias naive median", "pct"),
            ("model_coverage", "Model band coverage", "pct"),
            ("iid_coverage", "Naive band coverage", "pct"),
        ]
        head = "<th>Horizon</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in cols)
        body = []
        for hk in r["horizons"]:
            base = f"rolling.horizons.{hk}"
            body.append(
                "<tr>" + c(f"{base}.h", "int")
                + "".join(c(f"{base}.{k}", kind) for k, _, kind in cols) + "</tr>"
            )  # fmt: skip
        parts.append(
            f"<table class='forecast'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
            "</tbody></table>"
        )

    m = doc["model"]
    parts.append("<h2>Model</h2><table class='forecast'><tbody>")
    for label, key, kind in [
        ("Family", "model.kind", "text"),
        ("Window (periods)", "model.window", "int"),
        ("Scaling", "model.scale", "text"),
        ("Training windows", "model.train_windows", "int"),
        ("Validation windows", "model.validation_windows", "int"),
        ("Parameters", "model.parameters", "int"),
        ("Training RMSE", "model.train_rmse", "pct"),
        ("Validation RMSE", "model.validation_rmse", "pct"),
        ("Residuals bootstrapped from", "model.residuals_from", "text"),
        ("Residual standard deviation", "model.residual_sd", "pct"),
    ]:
        parts.append(f"<tr><th>{html.escape(label)}</th>{c(key, kind)}</tr>")
    parts.append("</tbody></table>")
    parts.append(
        f"<p class='note'>Units {html.escape(str(m.get('units')))}, epochs run "
        f"{html.escape(str(m.get('epochs_run')))}. {html.escape(doc['forecast']['method'])}."
        "</p>"
    )
    parts.append(
        f"<footer>Built {html.escape(doc['created'])} by kerastrader.forecast from the files "
        "in this folder.</footer></main></body></html>"
    )
    return "".join(parts)


def write_page(root: str | Path) -> Path:
    """(Re)write ``<root>/forecast.html`` from the forecast's files."""
    root = Path(root)
    out = root / PAGE
    out.write_text(render(root))
    return out

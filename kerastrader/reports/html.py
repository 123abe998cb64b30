"""The self-contained report page: inline CSS, images as data URIs, tables as HTML tables."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from kerastrader.reports.charts import bundle_name, plotly_script

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:24px 32px;background:#fff}
h1{margin:0 0 4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
h3{margin:20px 0 6px;font-size:16px}
.sub{color:#666;margin:0 0 16px}.warn{color:#a40000}
nav{font-size:13px;margin:8px 0 0}nav a{margin-right:12px;color:#1f5fa8;text-decoration:none}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #e2e2e2;padding:3px 8px;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:8px 0}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.grid figure{margin:0}
figure{margin:0}figcaption{font-size:13px;color:#555}
.chart{margin:8px 0 16px}
pre{background:#f6f6f6;padding:12px;overflow:auto;font-size:12px}
.note{color:#666;font-size:13px}footer{color:#888;font-size:12px;margin-top:40px}
.pyfolio table{font-size:12px}
"""

HEADLINE = [
    ("annual_return", "Annual return", "pct"),
    ("cumulative_returns", "Cumulative return", "pct"),
    ("annual_volatility", "Annual volatility", "pct"),
    ("sharpe_ratio", "Sharpe ratio", "num"),
    ("sortino_ratio", "Sortino ratio", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("calmar_ratio", "Calmar ratio", "num"),
    ("stability", "Stability", "num"),
    ("alpha", "Alpha (annual)", "pct"),
    ("beta", "Beta", "num"),
]


def fmt(value: Any, kind: str = "num") -> str:
    """A metric as escaped text: a percentage, a number, or 'n/a' for what JSON holds as null."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2%}" if kind == "pct" else f"{value:,.3f}"
    return html.escape(str(value))


def img(title: str, data: bytes) -> str:
    """A PNG inlined as a data URI: the page must open anywhere, offline, as one file."""
    b64 = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """Cells are HTML already (escape text with :func:`fmt` or ``html.escape``)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _shade(value: float, scale: float = 0.08) -> str:
    if value != value:  # NaN
        return ""
    strength = min(abs(value) / scale, 1.0)
    color = "0,140,60" if value > 0 else "200,30,30"
    return f' style="background:rgba({color},{0.08 + 0.55 * strength:.2f})"'


def monthly_table(returns: pd.Series) -> str:
    """Monthly returns by year as a shaded HTML table (a heat map that can be read and copied)."""
    import empyrical

    if returns.empty:
        return ""
    monthly = empyrical.aggregate_returns(returns, "monthly")
    yearly = empyrical.aggregate_returns(returns, "yearly")
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    head = "".join(f"<th>{m}</th>" for m in ["Year", *months, "Year total"])
    rows = []
    for year in sorted({y for y, _ in monthly.index}):
        cells = [f"<td>{year}</td>"]
        for m in range(1, 13):
            v = monthly.get((year, m))
            cells.append(f"<td{_shade(v)}>{v:.1%}</td>" if v is not None else "<td></td>")
        y = yearly.get(year)
        cells.append(f"<td{_shade(y, 0.3)}><b>{y:.1%}</b></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def frame_table(frame: pd.DataFrame, float_format: str = "{:,.4f}") -> str:
    """pandas' HTML with its text escaped (symbols and column names come from user data)."""
    return frame.to_html(
        float_format=lambda x: float_format.format(x), border=0, na_rep="", escape=True
    )


@dataclass
class Page:
    """Everything the report shows; built from a run's files by :mod:`report`."""

    title: str
    symbol: str
    metrics: dict[str, Any]
    returns: pd.Series
    transactions: pd.DataFrame
    round_trips: pd.DataFrame
    config_toml: str
    versions: dict[str, str]
    equity_chart: str = ""  # interactive charts (reports.charts blocks), plotly.js inlined once
    rolling_chart: str = ""
    price_charts: list[str] = field(default_factory=list)
    exposure_png: bytes | None = None
    model_pngs: list[tuple[str, bytes]] = field(default_factory=list)
    pyfolio_pngs: list[tuple[str, bytes]] = field(default_factory=list)
    pyfolio_tables: list[str] = field(default_factory=list)


SECTIONS = [
    ("headline", "Summary"),
    ("returns", "Returns"),
    ("exposure", "Exposure"),
    ("trades", "Trades"),
    ("model", "Model"),
    ("pyfolio", "pyfolio tear sheet"),
    ("data", "Data"),
    ("config", "Config"),
]


def _returns_text(run: dict) -> str:
    if run.get("returns") == "price":
        return "price returns (data.returns = price: dividends not counted)."
    if run.get("returns") == "total":
        return "total return (dividends paid in cash on their ex-dates, splits applied)."
    return "as recorded."


def render(page: Page) -> str:
    """The whole page as one string; every text that comes from data or config is escaped."""
    m = page.metrics
    run, strat, bench, model = m["run"], m["strategy"], m["benchmark"], m.get("model")
    period = (
        "<span class='warn'><b>IN-SAMPLE: the period overlaps the model's training or "
        "validation data</b></span>"
        if run.get("in_sample")
        else "out-of-sample backtest"
    )
    if run.get("look_ahead"):  # a data repair that read later bars (data.missing = interpolate)
        period += (
            " &middot; <span class='warn'><b>LOOK-AHEAD: "
            f"{html.escape(str(run['look_ahead']))}</b></span>"
        )
    nav = "".join(f"<a href='#{k}'>{html.escape(t)}</a>" for k, t in SECTIONS)
    has_charts = bool(page.equity_chart or page.rolling_chart or page.price_charts)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(page.title)}</title><style>{CSS}</style>",
        plotly_script() if has_charts else "",
        "</head><body><main>",
        f"<h1>{html.escape(page.title)}</h1>",
        f"<p class='sub'>{html.escape(page.symbol)} &middot; {fmt(run['start'])} to "
        f"{fmt(run['end'])} &middot; {run['bars']} bars &middot; {period} with commission and "
        "slippage; orders fill at the next bar's open</p>",
        f"<nav>{nav}</nav>",
        "<h2 id='headline'>Strategy against its benchmark</h2>",
        f"<p class='note'>Benchmark: {html.escape(str(run.get('benchmark') or 'buy and hold'))}."
        f" Returns: {html.escape(_returns_text(run))}</p>",
    ]
    rows = [
        (html.escape(label), fmt(strat.get(key), kind), fmt(bench.get(key), kind))
        for key, label, kind in HEADLINE
    ]
    bench_cum = bench.get("cumulative_returns")
    bench_final = (
        f"{run['start_value'] * (1 + bench_cum):,.2f}"
        if bench_cum is not None and run.get("start_value") is not None
        else ""
    )
    if run.get("capital") is not None:  # a paper session: what it sized from, and why
        source = html.escape(str(run.get("capital_source") or ""))
        rows.append(("Capital", f"{run['capital']:,.2f}" + (f" ({source})" if source else ""), ""))
    rows.append(("Final value", f"{run['final_value']:,.2f}", bench_final))
    rows.append(("Closed trades / fills", f"{run['trades']} / {run['fills']}", ""))
    if "rejections" in run:  # orders the broker refused (each sent again on the next bar)
        rows.append(("Orders refused by the broker", f"{run['rejections']}", ""))
    if run.get("dividends"):
        rows.append(("Dividends received (paid if short)", f"{run['dividends']:,.2f}", ""))
    parts.append(table(rows, ("", "Strategy", "Benchmark")))
    each = m.get("instruments") or {}
    if len(each) > 1:
        keys = (("annual_return", "pct"), ("annual_volatility", "pct"), ("sharpe_ratio", "num"),
                ("max_drawdown", "pct"), ("cumulative_returns", "pct"))  # fmt: skip
        rows = [(html.escape(sym), *(fmt(st.get(k), kind) for k, kind in keys))
                for sym, st in each.items()]  # fmt: skip
        parts.append("<h3>Buy and hold of each instrument, entered like the benchmark and "
                     "without costs</h3>")  # fmt: skip
        parts.append(table(rows, ("", "Annual return", "Volatility", "Sharpe", "Max drawdown",
                                  "Cumulative")))  # fmt: skip
    parts.append(page.equity_chart)

    parts.append("<h2 id='returns'>Returns</h2><h3>Monthly returns</h3>")
    parts.append(monthly_table(page.returns))
    if page.rolling_chart:
        parts.append("<h3>Rolling Sharpe ratio and volatility</h3>" + page.rolling_chart)

    parts.append("<h2 id='exposure'>Exposure</h2>")
    if page.exposure_png:
        parts.append(img("Long, short and net exposure", page.exposure_png))
    lev = strat.get("gross_leverage")
    parts.append(
        f"<p class='note'>Average gross leverage {fmt(lev)}; daily turnover "
        f"{fmt(strat.get('daily_turnover'), 'pct')}.</p>"
    )

    parts.append("<h2 id='trades'>Trades</h2>")
    if page.price_charts:
        parts.append("<h3>Price, fills and predictions</h3>")
        parts.extend(page.price_charts)
    parts.extend(_trades(page))

    parts.append("<h2 id='model'>Model diagnostics</h2>")
    parts.extend(_model(model, page.model_pngs))

    parts.append("<h2 id='pyfolio'>pyfolio tear sheet</h2>")
    if page.pyfolio_tables or page.pyfolio_pngs:
        parts.extend(f"<div class='pyfolio'>{t}</div>" for t in page.pyfolio_tables)
        parts.extend(img(t, d) for t, d in page.pyfolio_pngs)
    else:
        parts.append(
            "<p class='note'>Tear-sheet figures were not requested (report.figures = false).</p>"
        )

    parts.append("<h2 id='data'>Data provenance</h2>")
    parts.append(_provenance(m.get("data") or {}, run))
    parts.append("<h2 id='config'>Config</h2>")
    parts.append(f"<pre>{html.escape(page.config_toml)}</pre>")
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    libs = ", ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in page.versions.items())
    charts = f" Charts: {html.escape(bundle_name())}, inlined." if has_charts else ""
    parts.append(f"<footer>Generated {made} by kerastrader. {libs}.{charts}</footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _trades(page: Page) -> list[str]:
    out = []
    n = len(page.transactions)
    if not n:
        return [
            "<p class='note'>No fills: the strategy never traded in this period, so there "
            "are no round trips, turnover or transaction figures.</p>"
        ]
    trips = page.round_trips
    if len(trips):
        wins = (trips["pnl"] > 0).mean()
        out.append(
            f"<h3>Round trips</h3><p class='note'>{len(trips)} closed round trips (FIFO, PnL "
            f"before commissions), {wins:.0%} profitable, total PnL "
            f"{trips['pnl'].sum():,.2f}; commissions paid on all fills "
            f"{page.transactions['commission'].sum():,.2f}. (pyfolio's round-trip tables below "
            "also count a position still open at the end, closed at the last price.)</p>"
        )
        shown = trips[["symbol", "long", "open_dt", "close_dt", "duration", "pnl", "rt_returns"]]
        shown = shown.assign(
            open_dt=shown["open_dt"].dt.strftime("%Y-%m-%d %H:%M"),
            close_dt=shown["close_dt"].dt.strftime("%Y-%m-%d %H:%M"),
            duration=shown["duration"].astype(str),
            rt_returns=shown["rt_returns"].map(lambda x: f"{x:.2%}"),
        ).rename(columns={"rt_returns": "return"})
        out.append(frame_table(shown.reset_index(drop=True), "{:,.2f}"))
    else:
        out.append("<p class='note'>No round trip closed in this period.</p>")
    shown = page.transactions.tail(200).copy()
    shown.index = shown.index.strftime("%Y-%m-%d %H:%M")
    out.append(f"<h3>Fills</h3><p class='note'>{n} fills; the last {min(n, 200)} are listed.</p>")
    out.append(frame_table(shown))
    return out


def _model(model: dict | None, pngs: list[tuple[str, bytes]]) -> list[str]:
    if not model:
        return ["<p class='note'>No labelled predictions in the backtest period.</p>"]
    task = model.get("task", "direction")
    period = (
        f"Predictions on {fmt(model.get('test_start'))} to {fmt(model.get('test_end'))} "
        f"({model.get('n_test')} bars with a label)"
    )
    if task == "regression":
        out = [
            f"<p class='note'>{period}; label: the forward return. Directional accuracy near "
            "0.5 and an information coefficient (Spearman) near 0 are what a model without an "
            "edge scores.</p>"
        ]
        keys = ("mse", "mae", "directional_accuracy", "ic_spearman", "mean_prediction",
                "std_prediction")  # fmt: skip
    else:
        what = (
            "down / flat / up; the largest class's share"
            if task == "three_class"
            else "1 when the close rises; share of up bars"
        )
        out = [
            f"<p class='note'>{period}; label: {what} (base rate): "
            f"{fmt(model.get('base_rate'), 'pct')}. An accuracy or AUC near the base rate and "
            "0.5 is what a model without an edge scores.</p>"
        ]
        keys = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc",
                "log_loss")  # fmt: skip
    out.append(table([(k, fmt(model.get(k))) for k in keys], ("metric", "value")))
    cm = model.get("confusion_matrix")
    if cm:
        names = ["down/flat", "up"] if len(cm) == 2 else ["down", "flat", "up"]
        out.append(
            table(
                [(f"actual {n}", *(str(v) for v in row)) for n, row in zip(names, cm, strict=True)],
                ("", *(f"predicted {n}" for n in names)),
            )
        )
    folds = model.get("folds")
    if folds:
        header = tuple(folds[0].keys())
        out.append("<h3>Walk-forward folds</h3>")
        out.append(table([tuple(fmt(f.get(k)) for k in header) for f in folds], header))
    out.append("<div class='grid'>" + "".join(img(t, d) for t, d in pngs) + "</div>")
    return out


def _provenance(data: dict, run: dict) -> str:
    rows = [
        ("file", fmt(data.get("path"))),
        ("SHA-256", f"<code>{fmt(data.get('sha256'))}</code>"),
        ("bars in file", fmt(data.get("rows"))),
        ("date range", f"{fmt(data.get('first'))} to {fmt(data.get('last'))}"),
        ("prices adjusted by Adj Close", fmt(data.get("adjust"))),
        ("empty cells", fmt(data.get("missing"))),
        ("validation notes", fmt("; ".join(data.get("notes") or []) or "none")),
        ("model", fmt(run.get("model"))),
        ("warm-up bars", fmt(run.get("warmup_bars"))),
    ]
    return table(rows, ("", ""))

"""The self-contained report page: inline CSS, images as data URIs, nothing fetched."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from typing import Any

import pandas as pd

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:24px 32px;background:#fff}
h1{margin:0 0 4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
.sub{color:#666;margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border:1px solid #e2e2e2;padding:4px 10px;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:8px 0}
.grid{display:flex;flex-wrap:wrap;gap:16px}.grid figure{margin:0}
figcaption{font-size:13px;color:#555}
pre{background:#f6f6f6;padding:12px;overflow:auto;font-size:12px}
.note{color:#666;font-size:13px}footer{color:#888;font-size:12px;margin-top:40px}
"""

HEADLINE = [
    ("annual_return", "Annual return", "pct"),
    ("cumulative_returns", "Cumulative return", "pct"),
    ("annual_volatility", "Annual volatility", "pct"),
    ("sharpe_ratio", "Sharpe ratio", "num"),
    ("sortino_ratio", "Sortino ratio", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("calmar_ratio", "Calmar ratio", "num"),
    ("alpha", "Alpha (annual)", "num"),
    ("beta", "Beta", "num"),
]


def fmt(value: Any, kind: str = "num") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2%}" if kind == "pct" else f"{value:,.3f}"
    return html.escape(str(value))


def img(title: str, data: bytes) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(
    *,
    title: str,
    symbol: str,
    metrics: dict[str, Any],
    equity_png: bytes | None,
    model_pngs: list[tuple[str, bytes]],
    pyfolio_pngs: list[tuple[str, bytes]],
    pyfolio_tables: list[str],
    transactions: pd.DataFrame,
    config_toml: str,
    versions: dict[str, str],
) -> str:
    run, strat, bench, model = (
        metrics["run"],
        metrics["strategy"],
        metrics["benchmark"],
        metrics.get("model"),
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='sub'>{html.escape(symbol)} &middot; {fmt(run['start'])} to "
        f"{fmt(run['end'])} &middot; {run['bars']} bars &middot; "
        + (
            "<strong>IN-SAMPLE: the period overlaps the model's training or validation data"
            "</strong>"
            if run.get("in_sample")
            else "out-of-sample backtest"
        )
        + " with commission and slippage; orders fill at the next bar's open</p>",
        "<h2>Strategy against buy and hold</h2>",
    ]
    rows = [
        (html.escape(label), fmt(strat.get(key), kind), fmt(bench.get(key), kind))
        for key, label, kind in HEADLINE
    ]
    rows.append(("Final value", f"{run['final_value']:,.2f}", ""))
    rows.append(("Closed trades / fills", f"{run['trades']} / {run['fills']}", ""))
    parts.append(table(rows, ("", "Strategy", "Buy and hold")))
    if equity_png:
        parts.append(img("Growth of 1 and drawdowns", equity_png))

    parts.append("<h2>Model diagnostics</h2>")
    if model:
        parts.append(
            f"<p class='note'>Predictions on {fmt(model.get('test_start'))} to "
            f"{fmt(model.get('test_end'))} ({model.get('n_test')} bars with a label); "
            "label: 1 when Close[t+1] &gt; Close[t]. Base rate (share of up bars): "
            f"{fmt(model.get('base_rate'), 'pct')}.</p>"
        )
        keys = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
        parts.append(table([(k, fmt(model.get(k))) for k in keys], ("metric", "value")))
        cm = model.get("confusion_matrix")
        if cm:
            parts.append(
                table(
                    [
                        ("actual down/flat", str(cm[0][0]), str(cm[0][1])),
                        ("actual up", str(cm[1][0]), str(cm[1][1])),
                    ],
                    ("", "predicted down/flat", "predicted up"),
                )
            )
        parts.append("<div class='grid'>" + "".join(img(t, d) for t, d in model_pngs) + "</div>")
    else:
        parts.append("<p class='note'>No labelled predictions in the backtest period.</p>")

    if pyfolio_tables or pyfolio_pngs:
        parts.append("<h2>pyfolio tear sheet</h2>")
        parts.extend(f"<div>{t}</div>" for t in pyfolio_tables)
        parts.extend(img(t, d) for t, d in pyfolio_pngs)

    parts.append("<h2>Trades</h2>")
    n = len(transactions)
    if n:
        shown = transactions.tail(200).copy()
        shown.index = shown.index.strftime("%Y-%m-%d %H:%M")
        parts.append(f"<p class='note'>{n} fills in total; the last {min(n, 200)} are listed.</p>")
        parts.append(shown.to_html(float_format=lambda x: f"{x:,.4f}"))
    else:
        parts.append("<p class='note'>No fills: the strategy never traded.</p>")

    parts.append("<h2>Config</h2>")
    parts.append(f"<pre>{html.escape(config_toml)}</pre>")
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    libs = ", ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in versions.items())
    parts.append(f"<footer>Generated {made} by kerastrader. {libs}</footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts)

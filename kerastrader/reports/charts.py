"""Interactive charts for the pages (report, compare, study, forecast), drawn by plotly.js.

Every page stays one file that opens offline and makes no network request: plotly.js is
inlined once per page (:func:`plotly_script`), each chart is a ``<div>`` plus a small script
(:func:`figure_div`) whose config turns off everything that could fetch (MathJax, topojson,
the "edit in Chart Studio" link). The bundle is plotly.js's *basic* partial build (scatter, bar,
pie: all these charts use), 1.19 MB instead of the full 4.8 MB; it ships in ``assets/`` with its
MIT licence, at the version plotly.py 7.1 bundles (4.1.1). Without that file the full bundle
from the installed plotly package is used.

Long series are decimated before they reach the page (:func:`decimate`): at most ``MAX_POINTS``
points per trace, each bucket of consecutive bars keeping its first, lowest, highest and last
point, so every peak and every drawdown trough is drawn at its true value and date.
"""

from __future__ import annotations

import html
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

BUNDLE = Path(__file__).with_name("assets") / "plotly-basic.min.js"
MAX_POINTS = 2000  # per trace; a bucket keeps 4 points, so n bars become <= MAX_POINTS
PERIODS_PER_YEAR = 252

# Nothing in this config may reach the network: no MathJax, no topojson, no Chart Studio link.
CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "showSendToCloud": False,
    "typesetMath": False,
    "topojsonURL": "",
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}

GREEN, RED, BLUE, GREY, ORANGE = "#1a7f37", "#c62828", "#1f5fa8", "#888888", "#e07b00"
PALETTE = [BLUE, ORANGE, GREEN, RED, "#6a3d9a", "#b15928", "#17becf", GREY]
LAYOUT: dict[str, Any] = {
    "template": "none",  # no 7 KB default template in every chart
    "font": {"family": "-apple-system,Segoe UI,Helvetica,Arial,sans-serif", "size": 12},
    "margin": {"l": 60, "r": 20, "t": 80, "b": 40},
    "hovermode": "x unified",
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    "height": 460,
}


@lru_cache(maxsize=1)
def _bundle() -> tuple[str, str]:
    if BUNDLE.is_file():
        return "plotly.js basic 4.1.1 (partial bundle)", BUNDLE.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    log.warning("%s missing: inlining plotly's full bundle (about 4.8 MB)", BUNDLE)
    return f"plotly.js {get_plotlyjs_version()} (full bundle)", get_plotlyjs()


def bundle_name() -> str:
    """Which plotly.js the pages inline (stated in the pages' footers and the README)."""
    return _bundle()[0]


def plotly_script() -> str:
    """plotly.js as one inline ``<script>``: put it once per page, before the first chart."""
    return (
        "<script>window.PlotlyConfig={MathJaxConfig:'local'};</script>"
        f"<script>{_bundle()[1]}</script>"
    )


def figure_div(fig: Any, div_id: str, height: int | None = None) -> str:
    """One chart as a ``<div id=div_id>`` and its drawing script (plotly.js not included)."""
    if height is not None:
        fig.update_layout(height=height)
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=div_id,
        config=CONFIG,
        default_width="100%",
        default_height=f"{fig.layout.height or LAYOUT['height']}px",
    )


def chart_block(fig: Any, div_id: str, caption: str) -> str:
    """A chart with a caption, in the pages' ``<figure>`` markup."""
    return (
        f"<figure class='chart'>{figure_div(fig, div_id)}"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def decimate(series: pd.Series, max_points: int = MAX_POINTS) -> pd.Series:
    """At most ``max_points`` points of ``series``, in order, keeping each bucket's extremes.

    The bars are cut into buckets of equal length; each keeps its first, lowest, highest and
    last value (NaN ignored), so a drawdown's trough and a curve's peaks survive exactly,
    which plain every-n-th-bar sampling would miss.
    """
    n = len(series)
    if n <= max_points:
        return series
    buckets = max(max_points // 4, 1)
    size = -(-n // buckets)  # ceil
    values = series.to_numpy(dtype=float)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = values
    grid = padded.reshape(buckets, size)
    offsets = np.arange(buckets) * size
    keep = [offsets, np.minimum(offsets + size - 1, n - 1)]
    for fill, pick in ((np.inf, np.argmin), (-np.inf, np.argmax)):
        filled = np.where(np.isnan(grid), fill, grid)
        keep.append(offsets + pick(filled, axis=1))
    idx = np.unique(np.concatenate(keep))
    idx = idx[idx < n]
    return series.iloc[idx]


def _x(index: pd.Index) -> list[str] | np.ndarray:
    """Dates as plotly reads them: naive UTC ISO text (a '+00:00' suffix confuses plotly.js)."""
    if isinstance(index, pd.DatetimeIndex):
        if index.tz is not None:
            index = index.tz_convert("UTC").tz_localize(None)
        daily = bool(len(index)) and bool((index == index.normalize()).all())
        return np.asarray(index.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M:%S"))
    return np.asarray(index)


def _line(series: pd.Series, name: str, color: str, **kw: Any) -> Any:
    import plotly.graph_objects as go

    s = decimate(series)
    line = {"color": color, "width": kw.pop("width", 1.5), "dash": kw.pop("dash", "solid")}
    return go.Scatter(x=_x(s.index), y=s.to_numpy(float), name=name, mode="lines", line=line,
                      **kw)  # fmt: skip


def growth(returns: pd.Series) -> pd.Series:
    """Growth of 1 from simple per-bar returns."""
    return (1.0 + returns.fillna(0.0)).cumprod()


def drawdown(returns: pd.Series) -> pd.Series:
    """Fall from the running peak of the growth of 1 (0 at a new high, -0.2 for 20% down)."""
    g = growth(returns)
    return g / g.cummax().clip(lower=1.0) - 1.0


def equity_drawdown_chart(returns: pd.Series, benchmark: pd.Series | None = None) -> Any:
    """Growth of 1 (strategy and benchmark) above the strategy's drawdown, x axes linked."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                        vertical_spacing=0.04)  # fmt: skip
    fig.add_trace(_line(growth(returns), "Strategy", BLUE), row=1, col=1)
    if benchmark is not None and len(benchmark):
        fig.add_trace(_line(growth(benchmark), "Benchmark", GREY), row=1, col=1)
    fig.add_trace(
        _line(drawdown(returns), "Strategy drawdown", RED, fill="tozeroy", width=1), row=2, col=1
    )
    if benchmark is not None and len(benchmark):
        fig.add_trace(_line(drawdown(benchmark), "Benchmark drawdown", GREY, width=1),
                      row=2, col=1)  # fmt: skip
    fig.update_layout(**LAYOUT, title={"text": "Growth of 1 and drawdowns"})
    fig.update_yaxes(title_text="growth of 1", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    return fig


def price_predictions_chart(
    close: pd.Series | None, predictions: pd.Series | None, fills: pd.DataFrame | None
) -> Any:
    """Close with buys and sells at their fill prices, and the model's prediction below.

    ``fills``: one row per fill indexed by time with ``amount`` (signed) and ``price``.
    ``close`` may be None (the run files hold no closes): then the fills alone are drawn.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                        vertical_spacing=0.04)  # fmt: skip
    if close is not None and len(close):
        fig.add_trace(_line(close, "Close", GREY, width=1), row=1, col=1)
    if fills is not None and len(fills):
        for side, mask, symbol, color in (
            ("Buy", fills["amount"] > 0, "triangle-up", GREEN),
            ("Sell", fills["amount"] < 0, "triangle-down", RED),
        ):
            part = fills[mask]
            if not len(part):
                continue
            name = side
            if len(part) > MAX_POINTS:  # page size: the latest fills, and the legend says so
                name = f"{side} (last {MAX_POINTS:,} of {len(part):,})"
                part = part.iloc[-MAX_POINTS:]
            text = [f"{a:+,.4g} @ {p:,.4f}" for a, p in zip(part["amount"], part["price"],
                                                            strict=True)]  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=_x(part.index), y=part["price"].to_numpy(float), name=name,
                    mode="markers", marker={"symbol": symbol, "size": 9, "color": color},
                    text=text, hovertemplate="%{text}<extra>" + side + "</extra>",
                ),
                row=1, col=1,
            )  # fmt: skip
    if predictions is not None and len(predictions.dropna()):
        fig.add_trace(_line(predictions, "Prediction", ORANGE, width=1), row=2, col=1)
    fig.update_layout(**LAYOUT, title={"text": "Price, fills and the model's predictions"})
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="prediction", row=2, col=1)
    return fig


def rolling_sharpe(returns: pd.Series, window: int) -> pd.Series:
    """Annualised Sharpe ratio over the last ``window`` bars (mean / sample std)."""
    roll = returns.rolling(window)
    std = roll.std()
    return roll.mean() / std.where(std > 0) * np.sqrt(PERIODS_PER_YEAR)  # flat window: no value


def rolling_volatility(returns: pd.Series, window: int) -> pd.Series:
    """Annualised volatility over the last ``window`` bars (sample std)."""
    return returns.rolling(window).std() * np.sqrt(PERIODS_PER_YEAR)


def rolling_metrics_chart(
    returns: pd.Series, window: int = 126, benchmark: pd.Series | None = None
) -> Any:
    """Rolling annualised Sharpe and volatility (strategy, benchmark) over ``window`` bars."""
    curves = {"Strategy": returns}
    if benchmark is not None and len(benchmark):
        curves["Benchmark"] = benchmark
    return rolling_compare_chart(curves, window, colors=[BLUE, GREY])


def rolling_compare_chart(
    curves: dict[str, pd.Series], window: int = 126, colors: list[str] | None = None
) -> Any:
    """Rolling annualised Sharpe (top) and volatility (bottom) of each series of returns."""
    from plotly.subplots import make_subplots

    colors = colors or PALETTE
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.05)
    for i, (name, returns) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        fig.add_trace(_line(rolling_sharpe(returns, window), f"{name} Sharpe", color),
                      row=1, col=1)  # fmt: skip
        fig.add_trace(_line(rolling_volatility(returns, window), f"{name} volatility", color,
                            dash="dot"), row=2, col=1)  # fmt: skip
    fig.update_layout(**LAYOUT, title={"text": f"Rolling metrics over {window} bars (annualised)"})
    fig.update_yaxes(title_text="Sharpe ratio", row=1, col=1)
    fig.update_yaxes(title_text="volatility", tickformat=".0%", row=2, col=1)
    return fig


def curves_chart(
    curves: dict[str, pd.Series],
    title: str = "Growth of 1 and drawdowns",
    shown: set[str] | None = None,
) -> Any:
    """Growth of 1 (top) and drawdown (bottom) of several series of returns (compare, study).

    ``shown``: the names drawn at first (the others are a click on their legend entry away);
    None draws all.
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                        vertical_spacing=0.04)  # fmt: skip
    for i, (name, returns) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        visible = True if shown is None or name in shown else "legendonly"
        fig.add_trace(_line(growth(returns), name, color, legendgroup=name, visible=visible),
                      row=1, col=1)  # fmt: skip
        fig.add_trace(_line(drawdown(returns), f"{name} drawdown", color, width=1,
                            legendgroup=name, showlegend=False, visible=visible),
                      row=2, col=1)  # fmt: skip
    fig.update_layout(**LAYOUT, title={"text": title})
    fig.update_yaxes(title_text="growth of 1", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    return fig


def fan_chart(
    percentiles: pd.DataFrame,
    point_path: pd.Series | None = None,
    lines: dict[str, pd.Series] | None = None,
    title: str = "Forecast",
    y_title: str = "value",
) -> Any:
    """Percentile bands of a forecast, widest first, with the point path and reference lines.

    ``percentiles``: index = horizon (period or date), columns = percentile numbers (5, 25,
    50, 75, 95 or any symmetric set); each pair (p, 100 - p) is a shaded band, 50 a line.
    """
    import plotly.graph_objects as go

    cols = sorted(float(c) for c in percentiles.columns)
    by_value = {float(c): c for c in percentiles.columns}
    x = _x(percentiles.index)
    fig = go.Figure()
    lows = [p for p in cols if p < 50 and (100 - p) in by_value]
    for i, low in enumerate(lows):  # widest band first, so narrower ones draw on top
        high = 100 - low
        opacity = 0.12 + 0.18 * i / max(len(lows) - 1, 1)
        fig.add_trace(go.Scatter(x=x, y=percentiles[by_value[low]].to_numpy(float),
                                 mode="lines", line={"width": 0}, showlegend=False,
                                 name=f"p{low:g}", hoverinfo="skip"))  # fmt: skip
        fig.add_trace(go.Scatter(x=x, y=percentiles[by_value[high]].to_numpy(float),
                                 mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=f"rgba(31,95,168,{opacity:.2f})",
                                 name=f"p{low:g}-p{high:g}"))  # fmt: skip
    if 50.0 in by_value:
        fig.add_trace(go.Scatter(x=x, y=percentiles[by_value[50.0]].to_numpy(float),
                                 mode="lines", name="median", line={"color": BLUE}))  # fmt: skip
    if point_path is not None:
        fig.add_trace(go.Scatter(x=_x(point_path.index), y=point_path.to_numpy(float),
                                 mode="lines", name="point path",
                                 line={"color": ORANGE, "dash": "dash"}))  # fmt: skip
    palette = [RED, GREEN, GREY, "#6a3d9a"]
    for i, (name, series) in enumerate((lines or {}).items()):
        fig.add_trace(go.Scatter(x=_x(series.index), y=series.to_numpy(float), mode="lines",
                                 name=name, line={"color": palette[i % len(palette)],
                                                  "dash": "dot"}))  # fmt: skip
    fig.update_layout(**LAYOUT, title={"text": title})
    fig.update_yaxes(title_text=y_title)
    return fig

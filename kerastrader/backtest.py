"""The experiment runner: the only module that assembles Cerebro for a backtest.

bars -> (train or load) artifact -> Backtrader run over the out-of-sample period -> run files.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from kerastrader.config import Config, dump_config, embedded_data_path
from kerastrader.errors import ConfigError
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.frames import load_any
from kerastrader.models.artifact import Artifact, load_artifact, save_artifact
from kerastrader.models.evaluation import classification_metrics
from kerastrader.models.labels import direction_label
from kerastrader.models.progress import make_progress
from kerastrader.reports.analyzer import PortfolioAnalyzer
from kerastrader.reports.writer import write_run_files
from kerastrader.strategies.threshold import ThresholdStrategy, trade_start_date

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any]
    artifact: Artifact
    predictions: pd.Series


class _BarProgress(bt.Analyzer):
    """Advances a progress bar as Backtrader walks the bars."""

    params = (("progress", None), ("task", None))

    def next(self) -> None:
        self.p.progress.update(self.p.task, advance=1)


def load_bars(cfg: Config) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The configured bars: from the bar store when ``data.store`` is set, else a file."""
    d = cfg["data"]
    if d["store"]:
        from kerastrader.feeds.store import BarStore

        store = BarStore(d["store"])
        bars = store.read(d["symbol"], d["timeframe"])
        path_text = f"{store.name} ({d['symbol']} {d['timeframe']})"
        digest = None
    else:
        path = Path(d["path"]) if d["path"] else embedded_data_path()
        bars = load_any(
            path,
            date_format=d["date_format"],
            adjust=d["adjust"],
            missing=d["missing"],
            columns=d["columns"] or None,
            names=d["names"] or None,
            timezone=d["timezone"],
            symbol=d["symbol"],
        )
        path_text, digest = str(path), bars.attrs.get("sha256")
    notes = list(bars.attrs.get("notes", []))
    if d["session_start"] or d["session_end"]:
        from kerastrader.feeds.resample import filter_session

        before = len(bars)
        bars = filter_session(bars, d["session_start"] or "00:00", d["session_end"] or "23:59:59")
        notes.append(f"session filter kept {len(bars)} of {before} bars")
    if d["resample"]:
        from kerastrader.feeds.resample import resample_bars

        before = len(bars)
        bars = resample_bars(bars, d["resample"])
        notes.append(f"resampled {before} bars to {len(bars)} {d['resample']} bars")
    info = {
        "path": path_text,
        "sha256": digest,
        "symbol": d["symbol"],
        "rows": len(bars),
        "first": bars.index[0].date().isoformat(),
        "last": bars.index[-1].date().isoformat(),
        "adjust": d["adjust"],
        "missing": d["missing"],
        "date_format": d["date_format"],
        "notes": notes,
    }
    return bars, info


def _date_index(bars: pd.DataFrame, text: str, key: str, side: str) -> int:
    try:
        when = pd.Timestamp(text)
    except ValueError:
        raise ConfigError(f"backtest.{key} = {text!r}: not a date (YYYY-MM-DD)") from None
    idx = int(bars.index.searchsorted(when, side=side))
    return idx if side == "left" else idx - 1


def backtest_period(bars: pd.DataFrame, cfg: Config, artifact: Artifact) -> tuple[int, int, bool]:
    """Row numbers of the first and last traded bar (by default the model's test period), and
    whether the period overlaps the data the model was fitted on (same file or symbol)."""
    b = cfg["backtest"]
    start_text = b["start"] or artifact.metadata.get("periods", {}).get("test", [""])[0]
    first = _date_index(bars, start_text, "start", "left") if start_text else 0
    last = _date_index(bars, b["end"], "end", "right") if b["end"] else len(bars) - 1
    first = max(first, artifact.warmup - 1)
    span = f"{bars.index[0].date()} .. {bars.index[-1].date()}"
    if first > last or first >= len(bars):
        raise ConfigError(
            f"backtest period {start_text or 'start'} .. {b['end'] or 'end'} has no bars after the "
            f"{artifact.warmup}-bar warm-up in the data ({span})"
        )
    periods = artifact.metadata.get("periods", {})
    trained_on = artifact.metadata.get("data", {})
    same_data = trained_on.get("sha256") == bars.attrs.get("sha256") or (
        trained_on.get("symbol") == cfg["data"]["symbol"]
    )
    in_sample = False
    if same_data and "validation" in periods:
        fit_end = pd.Timestamp(periods["validation"][1])
        if bars.index[first] <= fit_end:
            in_sample = True
            log.warning(
                "the backtest starts %s, inside the model's training/validation periods "
                "(until %s): results are in-sample",
                bars.index[first].date(),
                fit_end.date(),
            )
    return first, last, in_sample


def run_experiment(
    cfg: Config, out_dir: str | Path, model_dir: str | Path | None = None
) -> RunResult:
    """Run one experiment end to end and write the run files into ``out_dir``."""
    from kerastrader.models.training import train

    out_dir = Path(out_dir)
    bars, data_info = load_bars(cfg)
    symbol = cfg["data"]["symbol"]
    log.info(
        "%s: %d bars %s .. %s", data_info["path"], len(bars), data_info["first"], data_info["last"]
    )

    if model_dir is not None:
        artifact = load_artifact(model_dir)
        artifact.check_compatible(  # the config must describe the model it loads
            cfg["features"]["names"], cfg["model"]["window"], cfg["features"]["memory"]
        )
    else:
        result = train(bars, cfg, data_info)
        artifact = result.artifact
        save_artifact(artifact, out_dir / "model")
        log.info("model saved to %s", out_dir / "model")

    first, last, in_sample = backtest_period(bars, cfg, artifact)
    # The feed starts at the first bar of the data, so predictions.csv has a row for every bar
    # (empty only during the warm-up); orders and returns start at the backtest period.
    window = bars.iloc[: last + 1]
    intraday = bool((bars.index != bars.index.normalize()).any())
    start = bars.index[first].to_pydatetime() if intraday else bars.index[first].date()

    b = cfg["broker"]
    cerebro = bt.Cerebro(stdstats=False, runonce=cfg["backtest"]["runonce"])
    cerebro.adddata(make_feed(window, symbol), name=symbol)
    cerebro.broker.setcash(b["cash"])
    cerebro.broker.setcommission(commission=b["commission"])
    if b["slippage"]:
        cerebro.broker.set_slippage_perc(b["slippage"], slip_open=True, slip_match=True)
    s = cfg["strategy"]
    cerebro.addstrategy(
        ThresholdStrategy,
        model=artifact,
        enter=s["enter"],
        exit=s["exit"],
        allow_short=s["allow_short"],
        target_percent=s["target_percent"],
        trade_start=trade_start_date(start),
    )
    cerebro.addanalyzer(PortfolioAnalyzer, _name="portfolio", start=start)
    with make_progress() as progress:
        task = progress.add_task("backtest", total=len(window), info=symbol)
        cerebro.addanalyzer(_BarProgress, progress=progress, task=task)
        strategy = cerebro.run()[0]
        progress.update(task, completed=len(window))
    analysis = strategy.analyzers.portfolio.get_analysis()

    pred = np.asarray(strategy.prediction.lines.prediction.array[: len(window)], dtype=float)
    predictions = pd.Series(pred, index=window.index, name="prediction")

    close = bars["close"]
    # Buy and hold, daily: the last close of each day against the previous day's.
    daily_close = close.iloc[: last + 1].groupby(close.index[: last + 1].normalize()).last()
    bench = daily_close.pct_change()
    bench = bench[bench.index >= bars.index[first].normalize()]
    bench.index = pd.DatetimeIndex(bench.index).tz_localize("UTC")
    bench.name = "benchmark"
    unmatched = analysis["returns"].index.difference(bench.index)
    if len(unmatched):  # a bug, not a user error: the report would compare against zeros
        raise RuntimeError(f"benchmark has no return on {len(unmatched)} strategy dates")

    labels = pd.Series(direction_label(close.to_numpy()), index=bars.index).iloc[first : last + 1]
    scored = pd.DataFrame({"y": labels, "p": predictions.reindex(labels.index)}).dropna()
    model_metrics: dict[str, Any] | None = None
    if len(scored):
        model_metrics = classification_metrics(scored["y"].to_numpy(), scored["p"].to_numpy())
        model_metrics["test_start"] = _stamp(scored.index[0])
        model_metrics["test_end"] = _stamp(scored.index[-1])
        model_metrics["source"] = "backtest period predictions"

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_predictions(out_dir / "predictions.csv", predictions)
    metrics = write_run_files(
        out_dir,
        returns=analysis["returns"],
        benchmark=bench,
        positions=analysis["positions"],
        transactions=analysis["transactions"],
        trades=analysis["trades"],
        start_value=analysis["start_value"],
        model=model_metrics,
        y_true=scored["y"].to_numpy() if len(scored) else None,
        y_prob=scored["p"].to_numpy() if len(scored) else None,
        config_toml=dump_config(cfg),
        title=cfg["report"]["title"] or f"{symbol} LSTM direction",
        symbol=symbol,
        figures=cfg["report"]["figures"],
        extra_run={
            "symbol": symbol,
            "data": data_info["path"],
            "model": str(artifact.path) if artifact.path else None,
            "warmup_bars": artifact.warmup,
            "runonce": cfg["backtest"]["runonce"],
            "figures": cfg["report"]["figures"],
            "in_sample": in_sample,
        },
        data=data_info,
        diagnostic_dates=scored.index if len(scored) else None,
    )
    return RunResult(out_dir=out_dir, metrics=metrics, artifact=artifact, predictions=predictions)


def _stamp(when: pd.Timestamp) -> str:
    """A date for daily bars, a date and time for intraday ones."""
    if when == when.normalize():
        return when.date().isoformat()
    return when.isoformat(sep=" ")


def _write_predictions(path: Path, predictions: pd.Series) -> None:
    """``date,prediction``: one row per bar of the feed, the prediction empty during warm-up."""
    frame = pd.DataFrame(
        {
            "date": [_stamp(d) for d in predictions.index],
            "prediction": [None if math.isnan(p) else p for p in predictions],
        }
    )
    frame.to_csv(path, index=False, float_format="%.8f")

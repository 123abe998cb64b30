"""The backtest session: bars -> (train or load) model -> one Cerebro from the shared assembly
with file feeds and the cost broker, over the out-of-sample period -> run files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from kerastrader.brokers.costs import configure_broker, round_trip_cost
from kerastrader.config import Config, dump_config
from kerastrader.feeds.actions import total_return_close
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.sessions import ExchangeClock
from kerastrader.models.artifact import Artifact
from kerastrader.models.progress import make_progress
from kerastrader.models.training import stamp
from kerastrader.models.walkforward import WalkForwardModel
from kerastrader.reports.writer import write_run_files
from kerastrader.runs.assembly import assemble
from kerastrader.runs.benchmark import BenchmarkSpec, benchmark_returns, benchmark_spec
from kerastrader.runs.files import write_predictions, write_targets
from kerastrader.runs.models import book_models
from kerastrader.runs.universe import backtest_period, intraday_bars, load_universe

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


def _instrument_returns(
    universe: dict[str, pd.DataFrame],
    decision: pd.Timestamp,
    end: pd.Timestamp,
    returns: str,
    days=None,
) -> dict[str, pd.Series]:
    """Each instrument's own buy and hold over the backtest, entered like the benchmark."""
    return {
        sym: benchmark_returns({sym: bars}, BenchmarkSpec({sym: 1.0}, "never", returns),
                               decision, end, days=days)
        for sym, bars in universe.items()
    }  # fmt: skip


def run_experiment(
    cfg: Config,
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    loaded: tuple[dict[str, pd.DataFrame], dict[str, Any]] | None = None,
) -> RunResult:
    """Run one experiment end to end and write the run files into ``out_dir``.

    ``loaded`` is ``load_universe(cfg)``'s answer when the caller has it already (a sweep
    loads the bars once for all its jobs); it is not changed.
    """
    out_dir = Path(out_dir)
    universe, data_info = loaded if loaded is not None else load_universe(cfg)
    universe = dict(universe)
    symbols = list(universe)
    multi = len(symbols) > 1
    log.info(
        "%s: %d bars of %s, %s .. %s",
        data_info["path"],
        data_info["rows"],
        ", ".join(symbols),
        data_info["first"],
        data_info["last"],
    )

    models, artifact, per_instrument = book_models(cfg, universe, data_info, out_dir, model_dir)
    head = artifact.head

    periods = {s: backtest_period(universe[s], cfg, models[s], s) for s in symbols}
    firsts = {s: universe[s].index[p[0]] for s, p in periods.items()}
    lasts = {s: p[1] for s, p in periods.items()}
    in_sample = any(p[2] for p in periods.values())
    intraday = any(intraday_bars(b) for b in universe.values())
    first_ts = min(firsts.values())
    start = first_ts.to_pydatetime() if intraday else first_ts.date()

    b = cfg["broker"]
    clock = ExchangeClock.from_config(cfg["data"])  # trading days, in the exchange's zone
    first_closes = [universe[sym]["close"].iloc[periods[sym][0]] for sym in symbols]
    price = float(np.median(first_closes))
    # Each feed starts at the first bar of its data, so predictions.csv has a row for every
    # bar (empty only during the warm-up); orders and returns start at the backtest period.
    cerebro = assemble(
        cfg,
        feeds=[(s, make_feed(universe[s].iloc[: lasts[s] + 1], s)) for s in symbols],
        install_broker=lambda c: configure_broker(c, b),
        model=models if per_instrument else artifact,
        head=head,
        trade_start=start,
        bars_index=universe[symbols[0]].index,
        round_trip=round_trip_cost(
            b, price, b["cash"] * cfg["strategy"]["target_percent"] / len(symbols) / price
        ),
        runonce=cfg["backtest"]["runonce"],
    )
    total = max(lasts[sym] + 1 for sym in symbols)
    with make_progress() as progress:
        task = progress.add_task("backtest", total=total, info=", ".join(symbols)[:40])
        cerebro.addanalyzer(_BarProgress, progress=progress, task=task)
        strategy = cerebro.run()[0]
        progress.update(task, completed=total)
    analysis = strategy.analyzers.portfolio.get_analysis()

    predictions, outputs = {}, {}
    for i, sym in enumerate(symbols):
        n = lasts[sym] + 1
        pred, outputs[sym] = strategy.predictions_by_bar(i, n)
        predictions[sym] = pd.Series(pred, index=universe[sym].index[:n], name="prediction")

    end_ts = max(universe[s].index[lasts[s]] for s in symbols)
    spec = benchmark_spec(cfg, symbols)
    bench = benchmark_returns(
        {s: universe[s].iloc[: lasts[s] + 1] for s in symbols},
        spec,
        first_ts,
        end_ts,
        broker=b,
        days=clock.trading_days,
    )
    bench_name = spec.describe(b)
    log.info("benchmark: %s", bench_name)
    unmatched = analysis["returns"].index.difference(bench.index)
    if len(unmatched):  # a bug, not a user error: the report would compare against zeros
        raise RuntimeError(f"benchmark has no return on {len(unmatched)} strategy dates")

    scored_parts = []
    for sym in symbols:
        bars = universe[sym]
        lo, hi = periods[sym][0], periods[sym][1]
        labels = head.labels(total_return_close(bars))
        rows = [i for i in range(lo, hi + 1) if i in outputs[sym] and not np.isnan(labels[i])]
        part = pd.DataFrame(
            {"y": labels[rows], "p": predictions[sym].iloc[rows].to_numpy(), "row": rows,
             "symbol": sym},
            index=bars.index[rows],
        )  # fmt: skip
        scored_parts.append(part)
    scored = pd.concat(scored_parts).sort_index(kind="stable")
    model_metrics: dict[str, Any] | None = None
    if len(scored):
        keys = zip(scored["symbol"], scored["row"], strict=True)
        raw = np.array([outputs[sym][row] for sym, row in keys])
        model_metrics = head.metrics(scored["y"].to_numpy(), raw)
        if isinstance(artifact, WalkForwardModel):
            model_metrics["folds"] = [
                {k: v for k, v in f.info.items() if k not in ("dir", "start")}
                for f in artifact.folds
            ]
        model_metrics["test_start"] = stamp(scored.index[0])
        model_metrics["test_end"] = stamp(scored.index[-1])
        model_metrics["source"] = "backtest period predictions" + (
            f" of {len(symbols)} symbols" if multi else ""
        )

    binary = len(scored) > 0 and head.kind == "direction"
    traded = {s: universe[s].iloc[: lasts[s] + 1] for s in symbols}
    each = (
        _instrument_returns(traded, first_ts, end_ts, cfg["data"]["returns"], clock.trading_days)
        if multi
        else {}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / "predictions.csv", predictions)
    write_targets(out_dir / "targets.csv", symbols, strategy.decisions)
    title_symbol = symbols[0] if not multi else f"{len(symbols)} symbols"
    metrics = write_run_files(
        out_dir,
        returns=analysis["returns"],
        benchmark=bench,
        positions=analysis["positions"],
        transactions=analysis["transactions"],
        trades=analysis["trades"],
        start_value=analysis["start_value"],
        model=model_metrics,
        y_true=scored["y"].to_numpy() if binary else None,
        y_prob=scored["p"].to_numpy() if binary else None,
        config_toml=dump_config(cfg),
        title=cfg["report"]["title"] or f"{title_symbol} {_describe(cfg)}",
        symbol=", ".join(symbols),
        figures=cfg["report"]["figures"],
        extra_run={
            "symbols": symbols,
            "data": data_info["path"],
            "model": str(
                out_dir / "model"
                if per_instrument and model_dir is None
                else (Path(model_dir) if model_dir else artifact.path)
            ),
            "warmup_bars": artifact.warmup,
            "runonce": cfg["backtest"]["runonce"],
            "figures": cfg["report"]["figures"],
            "in_sample": in_sample,
            "look_ahead": data_info.get("look_ahead"),
            "risk_events": [
                {"time": t, "symbol": sym, "event": what} for t, sym, what in strategy.events
            ],
            "rejections": len(strategy.rejections),
            "rejected_orders": [
                {"time": t, "symbol": sym, "status": what} for t, sym, what in strategy.rejections
            ],
            "benchmark": bench_name,
            "periods_per_year": strategy.z["periods_per_year"],
            "returns": cfg["data"]["returns"],
            "dividends": float(sum(cash for *_, cash in getattr(cerebro.broker, "dividends", []))),
        },
        data=data_info,
        diagnostic_dates=scored.index if binary else None,
        instruments=each if multi else None,
    )
    first_predictions = predictions[symbols[0]]
    return RunResult(
        out_dir=out_dir, metrics=metrics, artifact=artifact, predictions=first_predictions
    )


def _describe(cfg: Config) -> str:
    """The report's default title after the symbol: "LSTM direction", "GRU regression (h=5)"."""
    m, label = cfg["model"], cfg["label"]
    kind = "custom model" if m["kind"] == "custom" else m["kind"].upper()
    if m["kind"] in ("lstm", "gru") and m["bidirectional"]:
        kind = f"bidirectional {kind}"
    text = f"{kind} {label['kind'].replace('_', '-')}"
    if label["horizon"] != 1:
        text += f" (h={label['horizon']})"
    if cfg["walkforward"]["enabled"]:
        text += f", walk-forward {cfg['walkforward']['scheme']}"
    return text

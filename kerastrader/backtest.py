"""The experiment runner: the only module that assembles Cerebro for a backtest.

bars -> (train or load) artifact -> Backtrader run over the out-of-sample period -> run files.
"""

from __future__ import annotations

import glob
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
from kerastrader.feeds.actions import total_return_close, with_actions
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.frames import load_any
from kerastrader.feeds.sessions import ExchangeClock
from kerastrader.models.artifact import Artifact, save_artifact
from kerastrader.models.progress import make_progress
from kerastrader.models.training import stamp
from kerastrader.models.walkforward import WalkForwardModel, load_model, walk_forward
from kerastrader.reports.analyzer import PortfolioAnalyzer
from kerastrader.reports.writer import write_run_files
from kerastrader.runs.benchmark import benchmark_returns, benchmark_spec
from kerastrader.strategies.costs import configure_broker, round_trip_cost
from kerastrader.strategies.model_strategy import ModelStrategy
from kerastrader.strategies.sizing import bars_per_year

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


def _csv_options(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "date_format": d["date_format"],
        "adjust": d["adjust"],
        "missing": d["missing"],
        "columns": d["columns"] or None,
        "names": d["names"] or None,
        "timezone": d["timezone"],
    }


def _read_universe(d: dict[str, Any]) -> tuple[dict[str, pd.DataFrame], str, str | None]:
    """symbol -> raw bars, a description of the source, and the file's SHA-256 (one file)."""
    from kerastrader.feeds.loader import load_csv_symbols

    wanted = list(d["symbols"])
    if d["query"]:
        from kerastrader.feeds.frames import load_sql

        if not d["store"]:
            raise ConfigError("data.query needs data.store: the database URL to run it against")
        found = load_sql(d["store"], d["query"])
        if "" in found:  # no symbol column: one instrument, named data.symbol
            found = {d["symbol"]: found[""]}
        if not wanted:
            wanted = [d["symbol"]] if d["symbol"] in found else list(found)[:1]
        if wanted != ["*"]:
            missing = [s for s in wanted if s not in found]
            if missing:
                raise ConfigError(f"data.symbols: {', '.join(missing)} not in the query result")
            found = {s: found[s] for s in wanted}
        return found, f"{d['store']} query", None
    if d["store"]:
        from kerastrader.feeds.store import BarStore

        store = BarStore(d["store"])
        symbols = wanted if wanted and wanted != ["*"] else [d["symbol"]]
        if wanted == ["*"]:
            symbols = sorted({s for s, tf, _ in store.symbols() if tf == d["timeframe"]})
        universe = {s: store.read(s, d["timeframe"]) for s in symbols}
        return universe, f"{store.name} ({', '.join(symbols)} {d['timeframe']})", None
    path_text = d["path"] or str(embedded_data_path())
    if not wanted:
        bars = load_any(path_text, symbol=d["symbol"], **_csv_options(d))
        return {d["symbol"]: bars}, path_text, bars.attrs.get("sha256")
    files = sorted(glob.glob(path_text)) if glob.has_magic(path_text) else [path_text]
    if not files:
        raise ConfigError(f"data.path = {path_text!r} matches no file")
    universe: dict[str, pd.DataFrame] = {}
    for f in files:
        if Path(f).suffix.lower() in (".parquet", ".pq"):
            from kerastrader.feeds.loader import default_symbol

            universe[default_symbol(f)] = load_any(f, **_csv_options(d))
        else:
            universe.update(load_csv_symbols(f, **_csv_options(d)))
    if wanted != ["*"]:
        missing = [s for s in wanted if s not in universe]
        if missing:
            raise ConfigError(
                f"data.symbols: {', '.join(missing)} not in {path_text} "
                f"(it holds {', '.join(sorted(universe))})"
            )
        universe = {s: universe[s] for s in wanted}
    digest = universe[next(iter(universe))].attrs.get("sha256") if len(files) == 1 else None
    return universe, path_text, digest


def load_universe(cfg: Config) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The configured bars per symbol (one symbol unless ``data.symbols`` lists several)."""
    d = cfg["data"]
    universe, path_text, digest = _read_universe(d)
    notes: list[str] = []
    look_ahead: list[str] = []  # data repairs that read later bars (data.missing = interpolate)
    for sym, bars in list(universe.items()):
        notes += [f"{sym}: {n}" if len(universe) > 1 else n for n in bars.attrs.get("notes", [])]
        if bars.attrs.get("look_ahead"):
            look_ahead.append(f"{sym}: {bars.attrs['look_ahead']}")
        if d["session_start"] or d["session_end"]:
            from kerastrader.feeds.resample import filter_session

            before = len(bars)
            bars = filter_session(
                bars, d["session_start"] or "00:00", d["session_end"] or "23:59:59", d["timezone"]
            )
            notes.append(f"{sym}: session filter kept {len(bars)} of {before} bars")
        if d["resample"]:
            from kerastrader.feeds.resample import resample_bars

            before = len(bars)
            bars = resample_bars(bars, d["resample"], ExchangeClock.from_config(d))
            notes.append(f"{sym}: resampled {before} bars to {len(bars)} {d['resample']} bars")
        if not intraday_bars(bars):
            from kerastrader.feeds.gaps import gap_report

            gaps = gap_report(bars, d["calendar"])
            notes += [f"{sym}: {n}" if len(universe) > 1 else n for n in gaps]
        bars, note = with_actions(bars, d["returns"])
        log.info("%s: %s", sym, note)
        notes.append(f"{sym}: {note}" if len(universe) > 1 else note)
        universe[sym] = bars
    info = {
        "path": path_text,
        "sha256": digest,
        "symbol": d["symbol"] if len(universe) == 1 else None,
        "symbols": list(universe),
        "rows": int(sum(len(b) for b in universe.values())),
        "first": min(b.index[0] for b in universe.values()).date().isoformat(),
        "last": max(b.index[-1] for b in universe.values()).date().isoformat(),
        "adjust": d["adjust"],
        "returns": d["returns"],
        "missing": d["missing"],
        "date_format": d["date_format"],
        "notes": notes,
        "look_ahead": "; ".join(look_ahead) or None,
    }
    return universe, info


def intraday_bars(bars: pd.DataFrame) -> bool:
    return bool((bars.index != bars.index.normalize()).any())


def load_bars(cfg: Config) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The configured single instrument's bars."""
    universe, info = load_universe(cfg)
    if len(universe) != 1:
        raise ConfigError("load_bars reads one symbol; data.symbols lists several")
    return next(iter(universe.values())), info


def _date_index(bars: pd.DataFrame, text: str, key: str, side: str) -> int:
    try:
        when = pd.Timestamp(text)
    except ValueError:
        raise ConfigError(f"backtest.{key} = {text!r}: not a date (YYYY-MM-DD)") from None
    idx = int(bars.index.searchsorted(when, side=side))
    return idx if side == "left" else idx - 1


def backtest_period(
    bars: pd.DataFrame, cfg: Config, artifact: Artifact, symbol: str | None = None
) -> tuple[int, int, bool]:
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
    symbol = symbol or cfg["data"]["symbol"]
    same_data = (
        trained_on.get("sha256") == bars.attrs.get("sha256")
        or trained_on.get("symbol") == symbol
        or symbol in (trained_on.get("symbols") or [])
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


def _instrument_returns(
    universe: dict[str, pd.DataFrame],
    decision: pd.Timestamp,
    end: pd.Timestamp,
    returns: str,
    days=None,
) -> dict[str, pd.Series]:
    """Each instrument's own buy and hold over the backtest, entered like the benchmark."""
    from kerastrader.runs.benchmark import BenchmarkSpec

    return {
        sym: benchmark_returns({sym: bars}, BenchmarkSpec({sym: 1.0}, "never", returns),
                               decision, end, days=days)
        for sym, bars in universe.items()
    }  # fmt: skip


def _model_for(
    cfg: Config,
    universe: dict[str, pd.DataFrame],
    data_info: dict[str, Any],
    out_dir: Path,
    model_dir: str | Path | None,
    symbol: str | None,
):
    """Load, or train and save, the model for ``universe`` (one symbol's own model when
    ``symbol`` is given: saved in ``model/<symbol>/``)."""
    from kerastrader.models.training import train

    sub = Path(symbol) if symbol else Path()
    if model_dir is not None:
        artifact = load_model(Path(model_dir) / sub)
        if not cfg["selection"]["method"]:  # a selected subset is the model's own business
            artifact.check_compatible(  # the config must describe the model it loads
                cfg["features"]["names"], cfg["model"]["window"], cfg["features"]["memory"]
            )
        return artifact
    target = out_dir / "model" / sub
    if cfg["walkforward"]["enabled"]:
        work = out_dir / sub
        artifact = walk_forward(universe, cfg, data_info, target, workdir=work)
        log.info("%d walk-forward folds saved to %s", len(artifact.folds), target)
        return artifact
    bars = universe if len(universe) > 1 else next(iter(universe.values()))
    info = {**data_info, "symbol": symbol} if symbol else data_info
    result = train(bars, cfg, info, out_dir / sub)
    save_artifact(result.artifact, target)
    log.info("model saved to %s", target)
    return result.artifact


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

    per_instrument = multi and cfg["portfolio"]["models"] == "per_instrument"
    unknown = sorted(set(cfg["portfolio"]["weights"]) - set(symbols))
    if unknown:
        raise ConfigError(f"portfolio.weights: {', '.join(unknown)} not among the symbols "
                          f"({', '.join(symbols)})")  # fmt: skip
    if cfg["portfolio"]["allocation"] == "strategic" and not cfg["portfolio"]["weights"]:
        raise ConfigError("portfolio.allocation = 'strategic' needs portfolio.weights")
    if per_instrument:
        models = {sym: _model_for(cfg, {sym: universe[sym]}, data_info, out_dir, model_dir, sym)
                  for sym in symbols}  # fmt: skip
        artifact = models[symbols[0]]
    else:
        artifact = _model_for(cfg, universe, data_info, out_dir, model_dir, None)
        models = {sym: artifact for sym in symbols}
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
    cerebro = bt.Cerebro(stdstats=False, runonce=cfg["backtest"]["runonce"])
    # Each feed starts at the first bar of its data, so predictions.csv has a row for every
    # bar (empty only during the warm-up); orders and returns start at the backtest period.
    for sym in symbols:
        cerebro.adddata(make_feed(universe[sym].iloc[: lasts[sym] + 1], sym), name=sym)
    configure_broker(cerebro, b)
    first_closes = [universe[sym]["close"].iloc[periods[sym][0]] for sym in symbols]
    price = float(np.median(first_closes))
    sizing_cfg = dict(cfg["sizing"])
    if not sizing_cfg["periods_per_year"]:
        sizing_cfg["periods_per_year"] = bars_per_year(universe[symbols[0]].index)
    cerebro.addstrategy(
        ModelStrategy,
        model=models if per_instrument else artifact,
        settings={
            **{k: cfg[k] for k in ("strategy", "risk", "portfolio")},
            "sizing": sizing_cfg,
            "head": head.kind,
            "horizon": head.horizon,
        },
        trade_start=start,
        round_trip=round_trip_cost(
            b, price, b["cash"] * cfg["strategy"]["target_percent"] / len(symbols) / price
        ),  # fmt: skip
        clock=clock,
    )
    cerebro.addanalyzer(PortfolioAnalyzer, _name="portfolio", start=start, clock=clock)
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
    _write_predictions(out_dir / "predictions.csv", predictions)
    _write_targets(out_dir / "targets.csv", symbols, strategy.decisions)
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
            "periods_per_year": sizing_cfg["periods_per_year"],
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


def _write_predictions(path: Path, predictions: dict[str, pd.Series]) -> None:
    """One row per bar, the prediction empty during warm-up: ``date,prediction`` for one
    symbol, ``date,symbol,prediction`` for several."""
    frames = []
    for sym, series in predictions.items():
        frame = pd.DataFrame(
            {
                "date": [stamp(d) for d in series.index],
                "symbol": sym,
                "prediction": [None if math.isnan(p) else p for p in series],
            }
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    if len(predictions) == 1:
        out = out.drop(columns="symbol")
    else:
        out = out.sort_values(["date", "symbol"], kind="stable")
    out.to_csv(path, index=False, float_format="%.8f")


def _write_targets(path: Path, symbols: list[str], decisions: list[tuple[str, np.ndarray]]) -> None:
    """``time,symbol,target``: the weights the strategy decided at each rebalance (after its
    limits), to set against what the positions became."""
    rows = [(when, sym, float(w)) for when, targets in decisions
            for sym, w in zip(symbols, targets, strict=True)]  # fmt: skip
    pd.DataFrame(rows, columns=["time", "symbol", "target"]).to_csv(
        path, index=False, float_format="%.8f"
    )

"""The paper-trading session: the backtest's strategy and model, live through IB.

The same Cerebro assembly (:func:`kerastrader.runs.assembly.assemble`) as a backtest, with the
same :class:`ModelStrategy`, settings, model, clock and analyzer; only the data feed
(:class:`IBData`, one per instrument, each with its own contract) and the broker
(:class:`IBBroker`) differ. A book of several instruments is one session: their feeds hand
the strategy aligned bars (:class:`~kerastrader.brokers.ib.bargroup.BarGroup`), the shared
model makes one batched call per bar, and the strategy decides once per bar, as in the
backtest. With ``simulate`` the session starts the simulated gateway on loopback with the
config's own bars (``simulate=True``) or one bar file (history before the model's test
period, real-time replay from it), so a session can be rehearsed without an IB login and
compared file by file with a backtest of the same bars. A session writes the backtest's run
files (from the same analyzer) plus ``journal.sqlite``.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd

from kerastrader.config import Config, dump_config
from kerastrader.errors import ConfigError, KerastraderError
from kerastrader.runs.assembly import assemble
from kerastrader.runs.files import write_predictions, write_targets

log = logging.getLogger(__name__)


class SessionEnded(KerastraderError):
    """The session could not go on (IB gone for good, no real-time bars); its files were
    written from the journal before this was raised."""


@dataclass
class PaperResult:
    out_dir: Path
    metrics: dict[str, Any]
    journal_path: Path
    reconnects: int


def model_bar_seconds(paper: dict[str, Any], artifact: Any) -> int:
    """The strategy's bar size live: ``paper.bar_size`` ("1d", "60min", "5min"), or the spacing
    of the bars the model was trained on (its metadata), or a day."""
    if paper["bar_size"]:
        try:
            return int(pd.Timedelta(paper["bar_size"]).total_seconds())
        except ValueError:
            raise ConfigError(
                f"paper.bar_size = {paper['bar_size']!r}: not a duration such as 1d or 30min"
            ) from None
    trained = (artifact.metadata.get("data") or {}).get("bar_seconds")
    return int(trained) if trained else 86_400


class _Status(bt.Analyzer):
    """The live status line: time, last bar, prediction, position, PnL, orders open."""

    params = (("level", logging.INFO),)

    def next(self) -> None:
        s = self.strategy
        d = s.data
        value = s.broker.getvalue()
        pnl = value - s.broker.startingcash
        open_orders = sum(len(p) for p in s.pending)
        held = []
        for i, data in enumerate(s.datas):  # a book: each instrument's prediction and position
            pred = s.prediction_of(i)
            shown = f"{pred:.4f}" if not math.isnan(pred) else "-"
            name = f"{data._name} " if len(s.datas) > 1 else ""
            held.append(f"{name}prediction {shown} position {s.getposition(data).size:g}")
        log.log(
            self.p.level,
            "%s  close %.2f  %s  PnL %+.2f  open orders %d",
            d.datetime.datetime(0).isoformat(sep=" "),
            d.close[0],
            ", ".join(held),
            pnl,
            open_orders,
        )


def session_symbols(cfg: Config, trained_on: dict[str, pd.DataFrame] | None) -> list[str]:
    """The instruments a live session trades: those its model was just trained on, else the
    config's ``data.symbols`` (or ``data.symbol``)."""
    if trained_on is not None:
        return list(trained_on)
    wanted = list(cfg["data"]["symbols"])
    if wanted == ["*"]:
        raise ConfigError("a paper session with --model trades the instruments it is told: "
                          "name them in data.symbols (not '*')")  # fmt: skip
    return wanted or [cfg["data"]["symbol"]]


def session_bars(
    cfg: Config, simulate: str | Path | bool | None, where: str, *, training: bool
) -> tuple[dict[str, pd.DataFrame] | None, dict[str, Any], dict[str, pd.DataFrame] | None,
           dict[str, Any]]:  # fmt: skip
    """(bars to replay by symbol, or None live; the session's data description; bars to
    train on, or None with a model given; their description).

    ``simulate=True`` replays the config's own universe (every instrument of the book), a
    path replays that one file as ``data.symbol``."""
    from kerastrader.feeds.frames import load_any
    from kerastrader.runs.universe import load_universe

    if simulate is True:
        universe, info = load_universe(cfg)
        return universe, info, universe, info
    trained_on, train_info = load_universe(cfg) if training else (None, {})
    if simulate is None:
        symbols = session_symbols(cfg, trained_on)
        info = {"path": where, "symbol": symbols[0] if len(symbols) == 1 else None,
                "symbols": symbols}  # fmt: skip
        return None, info, trained_on, train_info or info
    symbol = cfg["data"]["symbol"]
    bars = load_any(str(simulate), symbol=symbol)
    info = {"path": str(simulate), "sha256": bars.attrs.get("sha256"), "symbol": symbol}
    return {symbol: bars}, info, trained_on, train_info or info


def run_paper(
    cfg: Config,
    out_dir: str | Path,
    *,
    model_dir: str | Path | None = None,
    simulate: str | Path | bool | None = None,
    host: str | None = None,
    port: int | None = None,
    client_id: int | None = None,
    dry_run: bool = False,
    live: bool = False,
    speed: float = 0.0,
    faults: Any = None,
    run_id: str | None = None,
    confirm: Any = None,
    store_options: dict[str, Any] | None = None,
    account: str | None = None,
    adopt_positions: bool | None = None,
    iblike: Any = None,
) -> PaperResult:
    """Run one session to its end (the replay's end, or Ctrl-C) and write its files.

    ``live`` allows a non-paper account and live ports, but only when ``confirm(account)``
    (the CLI asks the user to type the account id) returns True after connecting.
    ``store_options`` are extra :class:`IBStore` keywords (reconnect delays and the like).
    ``account`` and ``adopt_positions`` override ``paper.account`` and
    ``paper.adopt_positions``. A live session trades the model's own timeframe
    (``paper.bar_size``, by default the spacing of the bars the model was trained on), built
    from IB's 5-second bars on the exchange's clock, and sizes from ``paper.capital`` (0: the
    account's net liquidation).
    ``iblike`` (with ``simulate``; an ``IBLike``) makes the simulated gateway behave as IB
    does: 5-second real-time bars through each session on an exchange clock, from which the
    session builds the model's bars exactly as it does against IB.
    A session that cannot go on (IB unreachable after every reconnect attempt, real-time
    bars refused) writes its files and then raises :class:`SessionEnded` saying why.
    """
    from kerastrader.brokers.costs import make_commission
    from kerastrader.brokers.ib.bargroup import BarGroup
    from kerastrader.brokers.ib.broker import IBBroker
    from kerastrader.brokers.ib.contracts import contract_for
    from kerastrader.brokers.ib.feed import IBData
    from kerastrader.brokers.ib.store import IBStore
    from kerastrader.brokers.journal import Journal
    from kerastrader.brokers.safety import Limits
    from kerastrader.models.text_features import bind_text
    from kerastrader.runs.models import book_models
    from kerastrader.runs.universe import backtest_period

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = cfg["paper"]
    where = f"IB {host or p['host']}:{port or p['port']}"
    replay, data_info, trained_on, train_info = session_bars(
        cfg, simulate, where, training=model_dir is None
    )
    symbols = list(replay) if replay is not None else session_symbols(cfg, trained_on)
    models, artifact, per_instrument = book_models(
        cfg, trained_on or dict.fromkeys(symbols), train_info, out_dir, model_dir
    )
    if not per_instrument:
        models = dict.fromkeys(symbols, artifact)
    bind_text(models, cfg, watch=True)  # [text]: new items in the watched files enter next bar
    end_event = threading.Event()
    gateway = None
    bars_index = None
    if replay is not None:
        from kerastrader.brokers.ib.simulator import SimulatedGateway

        # Every instrument replays from its first test bar; the bars before it are history
        # (the same number for each, so one replay clock starts them together).
        periods = {s: backtest_period(b, cfg, models[s], s) for s, b in replay.items()}
        history = min(first for first, _, _ in periods.values())
        replay = {s: b.iloc[periods[s][0] - history : periods[s][1] + 1]
                  for s, b in replay.items()}  # fmt: skip
        gateway = SimulatedGateway(
            replay, history=history, broker=cfg["broker"], faults=faults,
            lockstep=speed == 0, speed=speed, cash=cfg["broker"]["cash"], ib=iblike,
        )  # fmt: skip
        host, port = gateway.start()
        end_event = gateway.finished
        trade_start = min(b.index[history] for b in replay.values()).to_pydatetime()
        bars_index = replay[symbols[0]].index
        if iblike is not None:  # IB's 5-second real-time bars; the model's bars built from them
            bar_seconds = 5
        else:  # the happy path: one file bar per real-time bar
            spacing = pd.Series(bars_index).diff().median()
            bar_seconds = int(spacing.total_seconds()) if pd.notna(spacing) else 86_400
    else:
        host = host or p["host"]
        port = int(port or p["port"])
        when = pd.Timestamp(p["trade_start"]) if p["trade_start"] else pd.Timestamp.now(tz="UTC")
        trade_start = when.tz_convert("UTC").tz_localize(None) if when.tzinfo else when
        trade_start = trade_start.to_pydatetime()
        bar_seconds = int(p["bar_seconds"])  # IB's real-time bars: 5 seconds
    # Reopening an existing journal resumes its run: same run id, order numbers go on.
    journal = Journal(out_dir / "journal.sqlite", run_id=run_id, synchronous=p["journal_sync"])
    lockstep = speed == 0 if simulate is not None else bool(p["lockstep"])
    store = IBStore(host, int(port), int(client_id or p["client_id"]), live=live,
                    lockstep=lockstep, realtime_errors=p.get("realtime_errors", "stop"),
                    account=account if account is not None else p["account"],
                    **(store_options or {}))  # fmt: skip
    store.start()
    if live:
        from kerastrader.brokers.safety import LiveTradingRefused

        if confirm is None or not confirm(store.account):
            store.stop()
            raise LiveTradingRefused(f"live trading on {store.account} was not confirmed")
    replayed = str(data_info["path"]) if simulate is not None else ""
    journal.record_session(mode="dry-run" if dry_run else "paper", account=store.account,
                           host=host, port=int(port), simulate=replayed)  # fmt: skip
    try:
        # The strategy's bars: the file's own with the happy-path simulator (one file bar per
        # real-time bar); live, the model's timeframe, built from the 5-second bars.
        from_file = simulate is not None and iblike is None  # one file bar per real-time bar
        size = bar_seconds if from_file else model_bar_seconds(p, artifact)
        timeframe = bt.TimeFrame.Days if size >= 86_400 else bt.TimeFrame.Minutes
        compression = 1 if size >= 86_400 else max(size // 60, 1)
        # One feed per instrument, each with its own contract; with several, a BarGroup hands
        # their bars to the strategy together (one decision per bar on aligned bars).
        group = BarGroup(p["align_seconds"]) if len(symbols) > 1 else None
        warmup = max(m.warmup for m in models.values()) + 5
        feeds = [
            (sym, IBData(store=store, contract=contract_for(p, sym, store.mod), warmup=warmup,
                         bar_seconds=bar_seconds, end=end_event, journal=journal,
                         timeframe=timeframe, compression=compression, group=group,
                         idle_exit=p["stop_after_idle"], name=sym))
            for sym in symbols
        ]  # fmt: skip
        broker = IBBroker(store=store, journal=journal, dry_run=dry_run,
                          datas=[d for _, d in feeds],
                          cash=cfg["broker"]["cash"],
                          capital=None if simulate is not None else float(p["capital"]),
                          adopt_positions=bool(p["adopt_positions"] if adopt_positions is None
                                               else adopt_positions),
                          limits=Limits(p["max_quantity"], p["max_notional"], p["max_position"],
                                        cfg["risk"]["daily_loss_limit"]))  # fmt: skip
        broker.addcommissioninfo(make_commission(cfg["broker"]))
        # The backtest's assembly with IB's feed and broker in place of the file feed and the
        # cost broker: same strategy, settings, model, clock and analyzer.
        cerebro = assemble(
            cfg,
            feeds=feeds,
            install_broker=lambda c: c.setbroker(broker),
            model=models if per_instrument else artifact,
            head=artifact.head,
            trade_start=trade_start,
            bars_index=bars_index,
            runonce=False,
        )
        # The status line every bar; a fast simulated replay keeps it to the debug log.
        cerebro.addanalyzer(_Status, level=logging.DEBUG if simulate else logging.INFO)
        stopped = {"flag": False}

        def on_sigint(signum, frame) -> None:  # a clean Ctrl-C: stop after the current bar
            stopped["flag"] = True
            end_event.set()
            cerebro.runstop()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            strategy = cerebro.run()[0]
        finally:
            signal.signal(signal.SIGINT, previous)
        if stopped["flag"] and p["cancel_on_exit"]:
            for orders in strategy.pending + strategy.children:
                for o in orders:
                    broker.cancel(o)
        metrics = _write_files(cfg, out_dir, strategy, artifact, symbols, data_info,
                               trade_start)  # fmt: skip
    finally:
        store.stop()
        if gateway is not None:
            gateway.stop()
    journal.close()
    if store.fatal is not None:
        raise SessionEnded(f"{store.fatal} (the session's files are in {out_dir})")
    return PaperResult(out_dir, metrics, out_dir / "journal.sqlite", store.reconnects)


def _write_files(cfg, out_dir, strategy, artifact, symbols, data_info, trade_start):
    from kerastrader.reports.writer import write_run_files
    from kerastrader.runs.benchmark import BenchmarkSpec, benchmark_returns, benchmark_spec

    analysis = strategy.analyzers.portfolio.get_analysis()
    journal = strategy.broker.journal
    # The capital the session stated at start (net liquidation or paper.capital), not the
    # config's cash: returns and the report start from what the account really put in.
    capital = float(getattr(strategy.broker, "start_cash", None) or cfg["broker"]["cash"])
    returns, positions, transactions = journal.report_frames(capital)
    start = pd.Timestamp(trade_start).tz_localize("UTC").normalize()
    returns = returns[returns.index >= start]
    positions = positions[positions.index >= start]
    transactions = transactions[transactions.index >= start]
    predictions = {}
    for i, (sym, data) in enumerate(zip(symbols, strategy.datas, strict=True)):
        n = len(data)
        index = pd.DatetimeIndex([bt.num2date(x) for x in data.datetime.get(size=n)])
        pred, _ = strategy.predictions_by_bar(i, n)
        # A stop (Ctrl-C) can leave a bar loaded that the indicator has not seen yet.
        m = min(len(pred), len(index))
        predictions[sym] = pd.Series(pred[:m], index=index[:m], name="prediction")
    write_predictions(out_dir / "predictions.csv", predictions)
    write_targets(out_dir / "targets.csv", symbols, strategy.decisions)
    # The book's own benchmark over every bar the session saw, across restarts (the
    # journal's bars), in price terms: IB pays dividends into the account as cash.
    seen = {}
    for sym in symbols:
        bars = journal.bars(sym)[["open", "close"]].copy()
        bars.index = bars.index.tz_localize(None) if bars.index.tz else bars.index
        seen[sym] = bars
    first_bar = min(b.index[min(int(b.index.searchsorted(pd.Timestamp(trade_start))),
                                len(b) - 1)] for b in seen.values())  # fmt: skip
    last_bar = max(b.index[-1] for b in seen.values())
    configured = benchmark_spec(cfg, symbols)
    spec = BenchmarkSpec(configured.weights, configured.rebalance, "price", configured.costs)
    bench = benchmark_returns(seen, spec, first_bar, last_bar, broker=cfg["broker"])
    title = symbols[0] if len(symbols) == 1 else f"{len(symbols)} symbols"
    return write_run_files(
        out_dir,
        returns=returns,
        benchmark=bench,
        positions=positions,
        transactions=transactions,
        trades=analysis["trades"],
        start_value=capital,
        model=None,
        y_true=None,
        y_prob=None,
        config_toml=dump_config(cfg),
        title=cfg["report"]["title"] or f"{title} paper session",
        symbol=", ".join(symbols),
        figures=cfg["report"]["figures"],
        extra_run={
            "mode": "paper",
            "capital": capital,
            "capital_source": next(
                (x["info"].get("source") for x in journal.sessions() if "capital" in x["info"]),
                "the configured cash",
            ),
            "model": str(artifact.path) if artifact.path else None,
            "warmup_bars": artifact.warmup,
            "symbols": symbols,
            "benchmark": spec.describe(cfg["broker"]),
            "rejections": len(strategy.rejections),
            "risk_events": [{"time": t, "symbol": s, "event": w} for t, s, w in strategy.events],
        },  # fmt: skip
        data=data_info,
    )

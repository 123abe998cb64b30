"""The paper-trading session: the backtest's strategy and model, live through IB.

The same Cerebro assembly (:func:`kerastrader.runs.assembly.assemble`) as a backtest, with the
same :class:`ModelStrategy`, settings, model, clock and analyzer; only the data feed
(:class:`IBData`) and the broker (:class:`IBBroker`) differ. With ``simulate`` the session
starts the simulated gateway on loopback with the given bar file (history before the model's
test period, real-time replay from it), so a session can be rehearsed without an IB login and
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
from kerastrader.runs.files import write_predictions

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
        log.log(
            self.p.level,
            "%s  close %.2f  prediction %s  position %s  PnL %+.2f  open orders %d",
            d.datetime.datetime(0).isoformat(sep=" "),
            d.close[0],
            f"{s.prediction_of(0):.4f}" if not math.isnan(s.prediction_of(0)) else "-",
            f"{s.getposition(d).size:g}",
            pnl,
            open_orders,
        )


def run_paper(
    cfg: Config,
    out_dir: str | Path,
    *,
    model_dir: str | Path | None = None,
    simulate: str | Path | None = None,
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
    A session that cannot go on (IB unreachable after every reconnect attempt, real-time
    bars refused) writes its files and then raises :class:`SessionEnded` saying why.
    """
    from kerastrader.brokers.costs import make_commission
    from kerastrader.brokers.ib.broker import IBBroker
    from kerastrader.brokers.ib.contracts import contract_for
    from kerastrader.brokers.ib.feed import IBData
    from kerastrader.brokers.ib.store import IBStore
    from kerastrader.brokers.journal import Journal
    from kerastrader.brokers.safety import Limits
    from kerastrader.feeds.frames import load_any
    from kerastrader.runs.models import model_for
    from kerastrader.runs.universe import backtest_period, load_universe

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = cfg["paper"]
    symbol = cfg["data"]["symbol"]
    gateway = None
    bars = None
    if simulate is not None:
        bars = load_any(str(simulate), symbol=symbol)
        data_info = {"path": str(simulate), "sha256": bars.attrs.get("sha256"), "symbol": symbol}
    if simulate is None:
        data_info = {"path": f"IB {host or p['host']}:{port or p['port']}", "symbol": symbol}
    if model_dir is not None:
        from kerastrader.models.walkforward import load_model

        artifact = load_model(model_dir)
    else:
        universe, data_info = load_universe(cfg)
        artifact = model_for(cfg, universe, data_info, out_dir, None, None)
    end_event = threading.Event()
    if simulate is not None:
        from kerastrader.brokers.ib.simulator import SimulatedGateway

        first, _, _ = backtest_period(bars, cfg, artifact, symbol)
        gateway = SimulatedGateway(
            {symbol: bars}, history=first, broker=cfg["broker"], faults=faults,
            lockstep=speed == 0, speed=speed, cash=cfg["broker"]["cash"],
        )  # fmt: skip
        host, port = gateway.start()
        end_event = gateway.finished
        trade_start = bars.index[first].to_pydatetime()
        spacing = pd.Series(bars.index).diff().median()
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
    journal.record_session(mode="dry-run" if dry_run else "paper", account=store.account,
                           host=host, port=int(port), simulate=str(simulate or ""))  # fmt: skip
    try:
        # The strategy's bars: the file's own with the happy-path simulator (one file bar per
        # real-time bar); live, the model's timeframe, built from the 5-second bars.
        size = bar_seconds if simulate is not None else model_bar_seconds(p, artifact)
        timeframe = bt.TimeFrame.Days if size >= 86_400 else bt.TimeFrame.Minutes
        compression = 1 if size >= 86_400 else max(size // 60, 1)
        data = IBData(store=store, contract=contract_for(p, symbol, store.mod),
                      warmup=artifact.warmup + 5, bar_seconds=bar_seconds, end=end_event,
                      journal=journal, timeframe=timeframe, compression=compression,
                      idle_exit=p["stop_after_idle"], name=symbol)  # fmt: skip
        broker = IBBroker(store=store, journal=journal, dry_run=dry_run,
                          datas=[data],
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
            feeds=[(symbol, data)],
            install_broker=lambda c: c.setbroker(broker),
            model=artifact,
            head=artifact.head,
            trade_start=trade_start,
            bars_index=bars.index if bars is not None else None,
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
        metrics = _write_files(cfg, out_dir, strategy, artifact, symbol, data_info,
                               trade_start)  # fmt: skip
    finally:
        store.stop()
        if gateway is not None:
            gateway.stop()
    journal.close()
    if store.fatal is not None:
        raise SessionEnded(f"{store.fatal} (the session's files are in {out_dir})")
    return PaperResult(out_dir, metrics, out_dir / "journal.sqlite", store.reconnects)


def _write_files(cfg, out_dir, strategy, artifact, symbol, data_info, trade_start):
    from kerastrader.reports.writer import write_run_files
    from kerastrader.runs.benchmark import BenchmarkSpec, benchmark_returns

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
    data = strategy.data
    n = len(data)
    times = [bt.num2date(x) for x in data.datetime.get(size=n)]
    index = pd.DatetimeIndex(times)
    pred, _ = strategy.predictions_by_bar(0, n)
    # A stop (Ctrl-C) can leave a bar loaded that the indicator has not seen yet.
    m = min(len(pred), len(index))
    predictions = {symbol: pd.Series(pred[:m], index=index[:m], name="prediction")}
    write_predictions(out_dir / "predictions.csv", predictions)
    # Buy and hold over every bar the session saw, across restarts: the journal's bars.
    seen = journal.bars(symbol)
    closes = seen[["open", "close"]].copy()
    closes.index = closes.index.tz_localize(None) if closes.index.tz else closes.index
    first = int(closes.index.searchsorted(pd.Timestamp(trade_start)))
    last = len(closes) - 1
    spec = BenchmarkSpec({symbol: 1.0}, "never", "price")  # IB pays dividends in the account
    bench = benchmark_returns({symbol: closes}, spec, closes.index[min(first, last)],
                              closes.index[last])  # fmt: skip
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
        title=cfg["report"]["title"] or f"{symbol} paper session",
        symbol=symbol,
        figures=cfg["report"]["figures"],
        extra_run={
            "mode": "paper",
            "capital": capital,
            "model": str(artifact.path) if artifact.path else None,
            "warmup_bars": artifact.warmup,
            "risk_events": [{"time": t, "symbol": s, "event": w} for t, s, w in strategy.events],
        },  # fmt: skip
        data=data_info,
    )

"""Paper trading against the simulated gateway: bar arrival to order sent, and the journal.

Run: ``.venv/bin/python benchmarks/bench_paper.py`` (about a minute). A Backtrader strategy
with ``KerasIndicator`` (LSTM(32), window 30, nine features, ONNX Runtime bar by bar) trades
one share on every bar of ORCL 2012-2014 replayed by the simulated gateway through the real
ib_async client. Latency is measured from the moment a real-time bar reaches the store's
queue to the moment ``placeOrder`` runs on the IB thread (features, model, strategy, the
journal write that precedes every order, the hand-over between threads). The journal is then
timed alone. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import backtrader as bt  # noqa: E402
import numpy as np  # noqa: E402

from kerastrader.brokers.ib.broker import IBBroker  # noqa: E402
from kerastrader.brokers.ib.feed import IBData  # noqa: E402
from kerastrader.brokers.ib.simulator import SimulatedGateway  # noqa: E402
from kerastrader.brokers.ib.store import IBStore  # noqa: E402
from kerastrader.brokers.journal import Journal  # noqa: E402
from kerastrader.config import default_config, embedded_data_path  # noqa: E402
from kerastrader.feeds.loader import load_csv  # noqa: E402
from kerastrader.models.indicator import KerasIndicator  # noqa: E402
from kerastrader.models.training import train  # noqa: E402


class EveryBar(bt.Strategy):
    """Buys one share on one bar and sells it on the next, from the model's first prediction."""

    params = (("model", None),)

    def __init__(self):
        self.p_up = KerasIndicator(self.data, model=self.p.model)

    def next(self):
        if np.isnan(self.p_up[0]) or self.data.datetime.date(0) < dt.date(2012, 1, 3):
            return
        if self.getposition(self.data).size:
            self.sell(size=1)
        else:
            self.buy(size=1)


def journal_throughput(path: Path, sync: str, n: int = 2000) -> tuple[float, float]:
    journal = Journal(path, synchronous=sync)
    t0 = time.perf_counter()
    for i in range(n):
        journal.record_order(journal.order_ref(i + 1), "ORCL", "BUY", 1, "MKT")
    orders = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n):
        journal.record_fill(f"e{i}", journal.order_ref(i + 1), "ORCL", "2014-01-02", 1, 40.0)
        journal.record_commission(f"e{i}", 1.0)
    fills = n / (time.perf_counter() - t0)
    journal.close()
    return orders, fills


def serve_gateway(history: int, ports, stop) -> None:
    """The simulated gateway in its own process, as IB Gateway is: no shared GIL."""
    bars = load_csv(embedded_data_path())
    gateway = SimulatedGateway({"ORCL": bars}, history=history, lockstep=True)
    ports.put(gateway.start())
    stop.wait()
    gateway.stop()


def session(art, history: int, sync: str, tmp: Path) -> tuple[np.ndarray, float]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve_gateway, args=(history, ports, stop), daemon=True)
    server.start()
    host, port = ports.get(timeout=120)
    store = IBStore(host, port, client_id=1, lockstep=True)
    journal = Journal(tmp / f"journal-{sync}.sqlite", synchronous=sync)
    store.start()
    try:
        cerebro = bt.Cerebro(stdstats=False)
        data = IBData(store=store, contract=store.mod.Stock("ORCL", "SMART", "USD"),
                      warmup=art.warmup + 5, bar_seconds=86_400, idle_exit=1.0,
                      journal=journal, timeframe=bt.TimeFrame.Days, name="ORCL")  # fmt: skip
        cerebro.adddata(data, name="ORCL")
        broker = IBBroker(store=store, journal=journal, datas=[data])
        cerebro.setbroker(broker)
        cerebro.addstrategy(EveryBar, model=art)
        t0 = time.perf_counter()
        cerebro.run()
        wall = time.perf_counter() - t0
    finally:
        store.stop()
        stop.set()
        server.join(timeout=10)
        journal.close()
    return np.array(broker.latencies) * 1e3, wall


def main() -> None:
    logging.disable(logging.WARNING)
    bars = load_csv(embedded_data_path())
    cfg = default_config()
    cfg["model"].update(window=30, units=[32], dropout=0.0)
    cfg["training"].update(epochs=1)
    art = train(bars, cfg, {}).artifact
    history = int(bars.index.searchsorted(np.datetime64("2012-01-01")))
    print("\nORCL 2012-2014 replayed in lockstep by the simulated gateway (its own process), "
          "one order per bar, ONNX inference bar by bar")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            lat, wall = session(art, history, sync, Path(tmp))
            p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
            print(
                f"  journal {sync:6s} bar arrival -> placeOrder  p50 {p50:5.2f} ms  "
                f"p99 {p99:5.2f} ms  ({len(lat)} orders, {wall:.0f} s; target p99 < 5 ms)"
            )
        for sync in ("FULL", "NORMAL"):
            orders, fills = journal_throughput(Path(tmp) / f"t-{sync}.sqlite", sync)
            print(f"  journal {sync:6s} (WAL, one transaction per event): {orders:7,.0f} orders/s, "
                  f"{fills:7,.0f} fill+commission pairs/s")  # fmt: skip


if __name__ == "__main__":
    main()

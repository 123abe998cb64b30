"""Paper trading against the simulated gateway: bar arrival to order sent, and the journal.

Run: ``.venv/bin/python benchmarks/bench_paper.py`` (three to five minutes). A Backtrader
strategy with ``KerasIndicator`` (LSTM(32), window 30, nine features, ONNX Runtime bar by
bar) trades one share on every bar of ORCL 2012-2014 replayed in lockstep by the simulated
gateway (in its own process, as IB Gateway is) through the real ib_async client. Latency is
measured from the moment a real-time bar reaches the store's queue (IB's thread) to the
moment ``placeOrder`` returns on that thread: the hand-over of the bar to Backtrader's
thread, features, model, strategy, the broker's handling of IB's events since the last bar,
the journal, and the hand-over of the order back to IB's thread.

Four sessions, alternated so that they share the machine's load: journal FULL and NORMAL,
each "before" (``Journal(background=False)``: every record its own transaction, as the
journal wrote until now) and "after" (the default: records buffered, the order intent
committed with them in one transaction). Lockstep never leaves the journal idle, so its WAL
grows and every fsync also journals the file's new size; two shorter FULL sessions paced at
two bars a second (IB's real-time bars come every 5 s) let it checkpoint between bars and
rewrite the WAL in place, as a live session does. Each session's latency is split into its
stages, and the disk's own fsync cost is measured next to them, so the output says what
bounds the figure. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
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

PACE, PACED_BARS = 2.0, 100  # the paced sessions: bars a second, bars
# bar reaches IB's thread -> Backtrader's thread takes it -> the order's commit starts -> it
# ends -> IB's thread takes the order -> placeOrder returns
STAGES = ("bar -> Backtrader", "strategy + events", "order commit", "order -> IB thread",
          "placeOrder")  # fmt: skip


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


# -- stamps on the path (the benchmark's own subclasses; the library is not instrumented) ----


class StampedJournal(Journal):
    def record_order(self, *args, **kwargs) -> None:
        self.stamps["commit0"] = time.perf_counter()
        super().record_order(*args, **kwargs)
        self.stamps["commit1"] = time.perf_counter()


class StampedData(IBData):
    def start(self) -> None:
        super().start()
        get, stamps = self.live.get, self.p.journal.stamps

        def stamped_get(*args, **kwargs):
            bar = get(*args, **kwargs)
            stamps["got"] = time.perf_counter()
            return bar

        self.live.get = stamped_get


class StampedBroker(IBBroker):
    def __init__(self) -> None:
        super().__init__()
        self.stages: list[tuple[float, ...]] = []

    def _submit(self, order):
        order = super()._submit(order)
        self.journal.stamps["posted"] = time.perf_counter()
        return order

    def _place_on_loop(self, contract, ib_order, parent_ib, arrived: float = 0.0) -> None:
        on_loop = time.perf_counter()
        super()._place_on_loop(contract, ib_order, parent_ib, arrived)
        s = self.journal.stamps
        if arrived and s.get("got", 0) > arrived:
            points = (arrived, s["got"], s["commit0"], s["commit1"], on_loop,
                      arrived + self.latencies[-1])  # fmt: skip
            self.stages.append(tuple(np.diff(points)))


def serve_gateway(history: int, ports, stop, speed: float = 0.0, live: int = 0) -> None:
    """The simulated gateway in its own process, as IB Gateway is: no shared GIL. In lockstep
    (each bar as soon as the last one is done), or ``speed`` bars a second for ``live`` bars."""
    bars = load_csv(embedded_data_path())
    if live:
        bars = bars.iloc[: history + live]
    gateway = SimulatedGateway({"ORCL": bars}, history=history, lockstep=not speed, speed=speed)
    ports.put(gateway.start())
    stop.wait()
    gateway.stop()


def session(art, history: int, sync: str, background: bool, tmp: Path, speed: float = 0.0,
            live: int = 0):  # fmt: skip
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve_gateway, args=(history, ports, stop, speed, live),
                         daemon=True)  # fmt: skip
    server.start()
    host, port = ports.get(timeout=120)
    store = IBStore(host, port, client_id=1, lockstep=not speed)
    name = f"journal-{sync}-{'after' if background else 'before'}-{speed}.sqlite"
    journal = StampedJournal(tmp / name, synchronous=sync, background=background)
    journal.stamps = {}
    store.start()
    try:
        cerebro = bt.Cerebro(stdstats=False)
        data = StampedData(store=store, contract=store.mod.Stock("ORCL", "SMART", "USD"),
                           warmup=art.warmup + 5, bar_seconds=86_400, idle_exit=5.0,
                           journal=journal, timeframe=bt.TimeFrame.Days, name="ORCL")  # fmt: skip
        cerebro.adddata(data, name="ORCL")
        broker = StampedBroker(store=store, journal=journal, datas=[data])
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
    return np.array(broker.latencies) * 1e3, np.array(broker.stages) * 1e3, wall


# -- the disk, alone -------------------------------------------------------------------------


def percentiles(times: list[float] | np.ndarray) -> tuple[float, float]:
    ms = np.asarray(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def disk_costs(tmp: Path, n: int = 300) -> dict[str, tuple[float, float]]:
    """p50/p99 (ms) of an fdatasync after a 4 KB write that grows a file, one that
    overwrites it in place, and a one-row SQLite commit in WAL mode (FULL, NORMAL)."""
    out: dict[str, tuple[float, float]] = {}
    for label, grow in (("grow", True), ("overwrite", False)):
        fd = os.open(tmp / f"sync-{label}", os.O_WRONLY | os.O_CREAT)
        if not grow:
            os.write(fd, b"\0" * 4096 * n)
            os.fsync(fd)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, b"x" * 4096, 4096 * i) if not grow else os.write(fd, b"x" * 4096)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
        os.close(fd)
        out[label] = percentiles(times)
    for sync in ("FULL", "NORMAL"):
        conn = sqlite3.connect(tmp / f"one-{sync}.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 100))
            conn.execute("COMMIT")
            times.append(time.perf_counter() - t0)
        conn.close()
        out[sync] = percentiles(times)
    return out


def journal_throughput(path: Path, sync: str, background: bool, n: int = 1000):
    """Orders per second (each committed before it returns) and fill + commission pairs per
    second (buffered, or each its own transaction before)."""
    journal = Journal(path, synchronous=sync, background=background)
    t0 = time.perf_counter()
    for i in range(n):
        journal.record_order(journal.order_ref(i + 1), "ORCL", "BUY", 1, "MKT")
    orders = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n):
        journal.record_fill(f"e{i}", journal.order_ref(i + 1), "ORCL", "2014-01-02", 1, 40.0)
        journal.record_commission(f"e{i}", 1.0)
    journal.flush()
    fills = n / (time.perf_counter() - t0)
    journal.close()
    return orders, fills


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
    print(f"machine: {os.cpu_count()} cores, load average at start "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        disk = disk_costs(tmp)
        print("\nthe disk alone (p50 / p99 ms):")
        print(f"  4 KB write + fdatasync, growing the file   {disk['grow'][0]:6.2f} / "
              f"{disk['grow'][1]:6.2f}")  # fmt: skip
        print(f"  4 KB write + fdatasync, in place           {disk['overwrite'][0]:6.2f} / "
              f"{disk['overwrite'][1]:6.2f}")  # fmt: skip
        for sync in ("FULL", "NORMAL"):
            print(f"  SQLite WAL one-row commit, {sync:6s}         {disk[sync][0]:6.2f} / "
                  f"{disk[sync][1]:6.2f}")  # fmt: skip
        results = {}
        for sync in ("FULL", "NORMAL"):
            for background in (False, True):
                results[sync, background] = session(art, history, sync, background, tmp)
        paced = {b: session(art, history, "FULL", b, tmp, speed=PACE, live=PACED_BARS)
                 for b in (False, True)}  # fmt: skip
        print("\nbar arrival -> placeOrder (ms; target p99 < 5 ms with the default, FULL):")
        for (sync, background), (lat, _, wall) in results.items():
            label = "after " if background else "before"
            p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
            print(f"  journal {sync:6s} {label}  p50 {p50:6.2f}  p99 {p99:6.2f}  "
                  f"({len(lat)} orders, {wall:.0f} s)")  # fmt: skip
        print(f"\npaced: {PACED_BARS} bars at {PACE:g} a second (a live session's gaps: the "
              "journal checkpoints between bars and rewrites its WAL in place):")  # fmt: skip
        for background, (lat, _, wall) in paced.items():
            label = "after " if background else "before"
            p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
            print(f"  journal FULL   {label}  p50 {p50:6.2f}  p99 {p99:6.2f}  "
                  f"({len(lat)} orders, {wall:.0f} s)")  # fmt: skip
        print("\nwhere the time goes, per stage (p50 / p99 ms):")
        print("  " + " " * 13 + "".join(f"{s:>20s}    " for s in STAGES))
        rows = [(sync, "after " if b else "before", r) for (sync, b), r in results.items()]
        rows += [("paced", "after " if b else "before", r) for b, r in paced.items()]
        for sync, label, (_, stages, _) in rows:
            p50, p99 = np.percentile(stages, 50, axis=0), np.percentile(stages, 99, axis=0)
            cells = "".join(f"{a:>12.2f} / {b:<9.2f}" for a, b in zip(p50, p99, strict=True))
            print(f"  {sync:6s} {label}  {cells}")
        print("\nthe journal alone (orders committed one by one; fill + commission pairs):")
        for sync in ("FULL", "NORMAL"):
            for background in (False, True):
                label = "after " if background else "before"
                path = tmp / f"t-{sync}-{label.strip()}.sqlite"
                orders, fills = journal_throughput(path, sync, background)
                print(f"  journal {sync:6s} {label}  {orders:8,.0f} orders/s  "
                      f"{fills:9,.0f} fill+commission pairs/s")  # fmt: skip
        print(f"\nload average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

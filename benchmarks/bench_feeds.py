"""Load + validate throughput against plain pandas reads of the same file.

Run: ``.venv/bin/python benchmarks/bench_feeds.py [--rows N]``. Generates N one-minute bars
(default 1,000,000), writes them as CSV and Parquet, and prints rows/s of kerastrader's
load + validate next to ``pandas.read_csv`` / ``pandas.read_parquet`` of the same file.
Then ingests the validated bars into the bar store and reads them back, on SQLite and (when
``--postgres URL`` or KERASTRADER_TEST_POSTGRES is given) PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kerastrader.feeds.frames import load_parquet
from kerastrader.feeds.loader import load_csv
from kerastrader.feeds.store import BarStore


def generate(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.0005, n)))
    open_ = close * np.exp(rng.normal(0, 0.0002, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0003, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0003, n)))
    index = pd.date_range("2010-01-04 09:30", periods=n, freq="min", name="Date")
    return pd.DataFrame(
        {
            "Open": open_.round(4),
            "High": high.round(4),
            "Low": low.round(4),
            "Close": close.round(4),
            "Adj Close": close.round(4),
            "Volume": rng.integers(100, 10_000, n),
        },
        index=index,
    )


def best_pair(plain, ours, repeats: int) -> tuple[float, float]:
    """Best of ``repeats`` for each, run in alternation: load from other processes on this
    shared machine then falls on both sides of a ratio alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((plain, times[0]), (ours, times[1])):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return min(times[0]), min(times[1])


def one_core(plain, ours, repeats: int) -> tuple[float, float]:
    """:func:`best_pair` with this process pinned to one core: pandas' parallel CSV reader
    (pandas 3.1 parses a file path in threads) and the loader's scan thread then share it."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        return best_pair(plain, ours, repeats)
    finally:
        os.sched_setaffinity(0, cores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--postgres", default=os.environ.get("KERASTRADER_TEST_POSTGRES"))
    args = ap.parse_args()
    frame = generate(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        csv, parquet = Path(tmp) / "bars.csv", Path(tmp) / "bars.parquet"
        frame.to_csv(csv, date_format="%Y-%m-%d %H:%M:%S")
        frame.to_parquet(parquet)
        bars = load_csv(csv)
        stores = [("SQLite", f"sqlite:///{Path(tmp) / 'bars.sqlite'}")]
        if args.postgres:
            stores.append(("PostgreSQL", args.postgres))
        store_rows = []
        for name, url in stores:
            store = BarStore(url)
            with store.engine.begin() as conn:
                conn.execute(store.table.delete().where(store.table.c.symbol == "BENCH"))
            t0 = time.perf_counter()
            store.ingest(bars, "BENCH", "1m")
            ingest = time.perf_counter() - t0
            t0 = time.perf_counter()
            store.read("BENCH", "1m")
            read = time.perf_counter() - t0
            store_rows.append((name, ingest, read))
            with store.engine.begin() as conn:
                conn.execute(store.table.delete().where(store.table.c.symbol == "BENCH"))
        csv_plain, csv_ours = best_pair(
            lambda: pd.read_csv(csv), lambda: load_csv(csv), args.repeats
        )
        csv1_plain, csv1_ours = one_core(
            lambda: pd.read_csv(csv), lambda: load_csv(csv), args.repeats
        )
        pq_plain, pq_ours = best_pair(
            lambda: pd.read_parquet(parquet), lambda: load_parquet(parquet), args.repeats
        )
        rows = [
            ("CSV: pandas.read_csv", csv_plain),
            ("CSV: kerastrader load + validate", csv_ours),
            ("CSV, one core: pandas.read_csv", csv1_plain),
            ("CSV, one core: kerastrader load + validate", csv1_ours),
            ("Parquet: pandas.read_parquet", pq_plain),
            ("Parquet: kerastrader load + validate", pq_ours),
        ]
    print(f"\n{args.rows:,} one-minute bars, best of {args.repeats}\n")
    for i, (name, seconds) in enumerate(rows):
        ratio = (
            "" if i % 2 == 0 else f"{seconds / rows[i - 1][1]:.2f} x the plain read (target <= 2)"
        )
        print(f"{name:40s} {args.rows / seconds:12,.0f} rows/s   {ratio}")
    for name, ingest, read in store_rows:
        print(f"{'store ' + name + ': ingest':40s} {args.rows / ingest:12,.0f} rows/s")
        print(f"{'store ' + name + ': read back':40s} {args.rows / read:12,.0f} rows/s")


if __name__ == "__main__":
    main()

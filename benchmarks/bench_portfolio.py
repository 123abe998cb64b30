"""A 50-instrument book driven by one shared model, bar by bar (as live), against the same
book driven by a plain SMA rule.

Run: ``.venv/bin/python benchmarks/bench_portfolio.py`` (a few minutes). 50 generated
random-walk instruments x 2,500 daily bars, one LSTM(32) over windows of 30 bars with the
nine default features, top-10 allocation rebalanced daily, the same ModelStrategy decision
code in both runs. Prints bars/s per instrument and model calls per bar; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import backtrader as bt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kerastrader.brokers.costs import configure_broker  # noqa: E402
from kerastrader.config import default_config  # noqa: E402
from kerastrader.feeds.btfeed import make_feed  # noqa: E402
from kerastrader.models.training import train  # noqa: E402
from kerastrader.strategies.model_strategy import ModelStrategy  # noqa: E402


def universe(n: int, bars: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2005-01-03", periods=bars, name="datetime")
    out = {}
    for k in range(n):
        close = 50.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, bars)))
        open_ = close * np.exp(rng.normal(0, 0.004, bars))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.005, bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.005, bars)))
        volume = rng.integers(1_000_000, 5_000_000, bars).astype(float)
        out[f"I{k:02d}"] = pd.DataFrame(
            {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
            index=index,
        )
    return out


class SmaBook(ModelStrategy):
    """The same decisions from a plain SMA signal: 0.5 + (close - SMA30) / close."""

    def __init__(self):
        super().__init__()
        self.smas = [bt.ind.SMA(d.close, period=30) for d in self.datas]

    def prediction_of(self, i: int) -> float:
        close = self.datas[i].close[0]
        return 0.5 + (close - self.smas[i][0]) / close


def settings() -> dict:
    cfg = default_config()
    cfg["portfolio"].update(allocation="top_k", top_k=10, rebalance="daily")
    return {k: cfg[k] for k in ("strategy", "sizing", "risk", "portfolio")}, cfg["broker"]


def run(book: dict[str, pd.DataFrame], strategy, **params) -> tuple[float, bt.Strategy]:
    s, broker = settings()
    cerebro = bt.Cerebro(stdstats=False, runonce=False)
    for sym, frame in book.items():
        cerebro.adddata(make_feed(frame, sym), name=sym)
    configure_broker(cerebro, broker)
    cerebro.addstrategy(strategy, settings=s, **params)
    t0 = time.perf_counter()
    strat = cerebro.run()[0]
    return time.perf_counter() - t0, strat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=50)
    ap.add_argument("--bars", type=int, default=2500)
    args = ap.parse_args()
    logging.disable(logging.INFO)

    book = universe(args.instruments, args.bars)
    cfg = default_config()
    cfg["model"].update(window=30, units=[32], dropout=0.0)
    cfg["training"].update(epochs=1)
    cfg["split"].update(train_end="", train_fraction=0.6, validation_fraction=0.2)
    art = train({k: book[k] for k in list(book)[:5]}, cfg, {}).artifact

    sma_seconds, _ = run(book, SmaBook, model=None)
    keras_seconds, strat = run(book, ModelStrategy, model=art)
    shared = strat.shared
    n, steps = args.instruments, args.bars
    per_inst_sma = steps / sma_seconds
    per_inst_keras = steps / keras_seconds
    print(
        f"\n{n} instruments x {steps} daily bars, bar-by-bar pass (runonce=False), top-10 "
        f"daily rebalance; model LSTM(32), window 30, {art.n_features} features\n"
    )
    print(f"{'':40s} {'bars/s per instrument':>22s} {'instrument-bars/s':>18s} {'wall':>8s}")
    print(f"{'plain SMA rule':40s} {per_inst_sma:22,.0f} {per_inst_sma * n:18,.0f} "
          f"{sma_seconds:7.1f}s")  # fmt: skip
    print(f"{'shared Keras model (ONNX)':40s} {per_inst_keras:22,.0f} {per_inst_keras * n:18,.0f} "
          f"{keras_seconds:7.1f}s")  # fmt: skip
    print(
        f"\nmodel calls: {shared.calls:,} over {shared.predicted_bars:,} bar steps with "
        f"predictions -> {shared.calls / max(shared.predicted_bars, 1):.2f} calls per bar "
        f"(target 1); {per_inst_keras / per_inst_sma:.2f} x the SMA book's speed"
    )


if __name__ == "__main__":
    main()

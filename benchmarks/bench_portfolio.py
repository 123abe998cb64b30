"""A 50-instrument book driven by one shared model against the same book driven by a plain
SMA rule, in the vectorised pass and bar by bar (as live), the shared indicator as it is and
as it was (one model call per feed, the whole pass run twice), side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_portfolio.py`` (several minutes). 50 generated
random-walk instruments x 2,500 daily bars, one LSTM(32) over windows of 30 bars with the
nine default features, top-10 allocation rebalanced daily, the same ModelStrategy decision
code in every run. Runs of one pass are interleaved (SMA, new, old, SMA, ...) and the best of
``--repeat`` rounds is kept, so a load spike on the shared machine hits all of them alike.
Prints ratios to the SMA book, what the indicator's time is spent on, and the model's own
compute measured alone (outside Backtrader); asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import backtrader as bt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kerastrader.brokers.costs import configure_broker  # noqa: E402
from kerastrader.config import default_config  # noqa: E402
from kerastrader.feeds.btfeed import make_feed  # noqa: E402
from kerastrader.models.indicator import DataPredictor, model_schedule  # noqa: E402
from kerastrader.models.training import train  # noqa: E402
from kerastrader.models.windows import make_windows, window_ends  # noqa: E402
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


# -- the shared indicator as it was before issue 16 (commit c414c19..4033276^), kept here so
# that the old path stays measurable next to the new one ---------------------------------------
class _OldShared(bt.Indicator):
    params = (("model", None), ("backend", "onnx"))

    def __init__(self) -> None:
        self.schedule = model_schedule(self.p.model)
        self.feeds = [DataPredictor(d, self.schedule, self.p.backend) for d in self.datas]
        self.addminperiod(1)
        self.calls = self.bars = self.predicted_bars = 0
        self._seen = [0] * len(self.datas)
        self.outputs: list[dict[int, np.ndarray]] = [{} for _ in self.datas]
        self.scores: list[dict[int, float]] = [{} for _ in self.datas]

    def once(self, start: int, end: int) -> None:
        if end <= start:
            return
        clock = np.asarray(self.data.datetime.array[start:end], dtype=np.float64)
        for i, feed in enumerate(self.feeds):
            n = len(feed.data.datetime.array)
            scores = np.full(n, math.nan)
            for rows, s, outputs in feed.once(0, n):
                scores[rows] = s
                for j, r in enumerate(rows):
                    self.outputs[i][int(r)] = outputs[j]
                    self.scores[i][int(r)] = float(s[j])
            when = np.asarray(feed.data.datetime.array[:n], dtype=np.float64)
            idx = np.searchsorted(when, clock, side="right") - 1
            line = self.lines[i].array
            for j, k in enumerate(idx):
                line[start + j] = scores[k] if k >= 0 else math.nan

    def next(self) -> None:
        self.bars += 1
        pending: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, feed in enumerate(self.feeds):
            n = len(feed.data)
            if n == self._seen[i]:
                self.lines[i][0] = self.lines[i][-1] if len(self) > 1 else math.nan
                continue
            self._seen[i] = n
            got = feed.window_now()
            if got is None:
                self.lines[i][0] = math.nan
                continue
            k, ring = got
            pending.setdefault(k, []).append((i, ring.copy()))
        self.predicted_bars += bool(pending)
        for k, items in pending.items():
            step = self.feeds[items[0][0]].step(k)
            outputs = step.batch(np.stack([ring for _, ring in items]))
            self.calls += 1
            scores = step.score(outputs)
            for (i, _), s, o in zip(items, scores, outputs, strict=True):
                bar = len(self.feeds[i].data) - 1
                self.lines[i][0] = float(s)
                self.outputs[i][bar] = o
                self.scores[i][bar] = float(s)


_OLD: dict[int, type] = {}


def old_shared(*datas, model):
    n = len(datas)
    if n not in _OLD:
        _OLD[n] = type(f"OldShared{n}", (_OldShared,), {"lines": tuple(f"p{i}" for i in range(n))})
    return _OLD[n](*datas, model=model)


class OldSharedBook(ModelStrategy):
    """ModelStrategy on the old shared indicator (its decisions read ``self.shared``)."""

    params = (("old_model", None),)

    def __init__(self):
        super().__init__()
        self.shared = old_shared(*self.datas, model=self.p.old_model)


# -- runs -----------------------------------------------------------------------------------
def settings() -> tuple[dict, dict]:
    cfg = default_config()
    cfg["portfolio"].update(allocation="top_k", top_k=10, rebalance="daily")
    return {k: cfg[k] for k in ("strategy", "sizing", "risk", "portfolio")}, cfg["broker"]


def run(book: dict[str, pd.DataFrame], runonce: bool, strategy, **params):
    s, broker = settings()
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    for sym, frame in book.items():
        cerebro.adddata(make_feed(frame, sym), name=sym)
    configure_broker(cerebro, broker)
    cerebro.addstrategy(strategy, settings=s, **params)
    t0 = time.perf_counter()
    strat = cerebro.run()[0]
    return time.perf_counter() - t0, strat


def interleaved(book, runonce: bool, art, repeat: int) -> dict[str, tuple[float, object]]:
    """Best wall time (and that run's strategy) of each book over ``repeat`` rounds."""
    books = {
        "sma": (SmaBook, {"model": None}),
        "new": (ModelStrategy, {"model": art}),
        "old": (OldSharedBook, {"model": None, "old_model": art}),
    }
    best: dict[str, tuple[float, object]] = {}
    for _ in range(repeat):
        for name, (strategy, params) in books.items():
            seconds, strat = run(book, runonce, strategy, **params)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, strat)
    return best


def all_windows(book, art) -> np.ndarray:
    """Every instrument's scaled windows, built from the features' own definition."""
    parts = []
    for frame in book.values():
        feats = art.feature_set.compute(frame)
        ends = window_ends(~np.isnan(feats).any(axis=1), art.window)
        parts.append(make_windows(art.scaler.transform(feats), ends, art.window))
    return np.concatenate(parts)


def model_alone(book, art, steps: int) -> dict[str, float]:
    """The model's compute outside Backtrader: one batched call over every instrument's
    windows, and one bar-by-bar call over one window per instrument (``steps`` times)."""
    x = all_windows(book, art)
    predictor = art.batch_predictor
    predictor.outputs(x[:256])  # open the session
    batch = []
    for _ in range(3):
        t0 = time.perf_counter()
        predictor.outputs(x)
        batch.append(time.perf_counter() - t0)
    step = art.step_predictor("onnx")
    n = len(book)
    per_bar = np.empty(steps)
    for j in range(steps):
        t0 = time.perf_counter()
        step.batch(x[j * n % (len(x) - n) :][:n])
        per_bar[j] = time.perf_counter() - t0
    return {
        "windows": len(x),
        "batch": min(batch),
        "bar_total": float(per_bar.sum()),
        "bar_p50": float(np.median(per_bar)),
        "bar_p99": float(np.quantile(per_bar, 0.99)),
    }


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def show(name: str, seconds: float, instrument_bars: int, sma: float | None, note: str = ""):
    rate = instrument_bars / seconds
    ratio = f"{sma / seconds:5.2f} x plain" if sma is not None else ""
    print(f"  {name:46s} {rate:10,.0f} {seconds:7.1f}s   {ratio}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=50)
    ap.add_argument("--bars", type=int, default=2500)
    ap.add_argument("--repeat", type=int, default=2, help="rounds per pass (best kept)")
    args = ap.parse_args()
    logging.disable(logging.INFO)

    book = universe(args.instruments, args.bars)
    cfg = default_config()
    cfg["model"].update(window=30, units=[32], dropout=0.0)
    cfg["training"].update(epochs=1)
    cfg["split"].update(train_end="", train_fraction=0.6, validation_fraction=0.2)
    art = train({k: book[k] for k in list(book)[:5]}, cfg, {}).artifact
    n, steps = args.instruments, args.bars
    ib = n * steps
    print(
        f"\n{n} instruments x {steps} daily bars, top-10 daily rebalance; one shared LSTM(32), "
        f"window 30, {art.n_features} features; best of {args.repeat} interleaved rounds; "
        f"load average {load()} at start"
    )
    alone = model_alone(book, art, steps)
    print(f"\n  {'':46s} {'inst-bars/s':>10s} {'wall':>8s}")

    print("vectorised pass (runonce=True)")
    vec = interleaved(book, True, art, args.repeat)
    sma = vec["sma"][0]
    new = vec["new"][1].shared
    limit = sma / (sma + alone["batch"])
    show("plain SMA rule", sma, ib, None)
    show("shared model, one call over all windows (new)", vec["new"][0], ib, sma,
         f"   (target >= 0.85; model-bound limit {limit:.2f})")  # fmt: skip
    show("shared model, a call per feed, pass twice (old)", vec["old"][0], ib, sma)
    print(
        f"  inside the new indicator: features + windows {new.seconds['features']:.2f} s, "
        f"{new.batch_calls} model call {new.seconds['model']:.2f} s over {alone['windows']:,} "
        f"windows\n  model call alone, outside Backtrader: {alone['batch']:.2f} s "
        f"({alone['batch'] / alone['windows'] * 1e6:.1f} us a window)"
    )

    print("bar-by-bar pass (runonce=False, as live)")
    bbb = interleaved(book, False, art, args.repeat)
    sma = bbb["sma"][0]
    new = bbb["new"][1].shared
    limit = sma / (sma + alone["bar_total"])
    show("plain SMA rule", sma, ib, None)
    show("shared model, one call per bar (new)", bbb["new"][0], ib, sma,
         f"   (target >= 0.85; model-bound limit {limit:.2f})")  # fmt: skip
    show("shared model, one call per bar (old)", bbb["old"][0], ib, sma)
    feats_us = new.seconds["features"] / ib * 1e6
    print(
        f"  inside the new indicator: features and windows (DataPredictor.window_now) "
        f"{new.seconds['features']:.2f} s = {feats_us:.1f} us per instrument-bar; model calls "
        f"{new.seconds['model']:.2f} s\n"
        f"  model call alone ({n} windows): p50 {alone['bar_p50'] * 1e3:.3f} ms, "
        f"p99 {alone['bar_p99'] * 1e3:.3f} ms, {alone['bar_total']:.2f} s over {steps:,} bars\n"
        f"  model calls: {new.calls:,} over {new.predicted_bars:,} bar steps with predictions "
        f"-> {new.calls / max(new.predicted_bars, 1):.2f} calls per bar (target 1)"
    )
    print(f"load average {load()} at the end")


if __name__ == "__main__":
    main()

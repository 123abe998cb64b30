"""KerasIndicator against plain Backtrader and against the tutorial's model.predict() per bar.

Run: ``.venv/bin/python benchmarks/bench_indicator.py`` (about three minutes). Everything is
measured side by side in this one run, on the embedded ORCL 1995-2014 daily bars (and a
generated 20,000-bar daily series for the vectorised pass), with an LSTM(32) over windows of
30 bars. Prints ratios; asserts nothing.

In the vectorised pass, the time spent inside ``KerasIndicator.once`` (features, windows, the
model, writing the line) is measured too, next to the model's batched call over the same
windows alone: the "limit" is the ratio the run would reach if everything in the indicator but
that call were free, i.e. the bound the model's own compute sets.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import backtrader as bt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kerastrader.config import default_config, embedded_data_path  # noqa: E402
from kerastrader.feeds.btfeed import make_feed  # noqa: E402
from kerastrader.feeds.loader import load_csv  # noqa: E402
from kerastrader.models.artifact import save_artifact  # noqa: E402
from kerastrader.models.indicator import KerasIndicator  # noqa: E402
from kerastrader.models.training import train  # noqa: E402
from kerastrader.models.windows import make_windows, window_ends  # noqa: E402
from kerastrader.strategies.signals import threshold_side  # noqa: E402


class TimedKerasIndicator(KerasIndicator):
    """KerasIndicator, with the time of its vectorised pass kept (``last_once`` seconds)."""

    last_once = 0.0

    def once(self, start, end):
        t0 = time.perf_counter()
        super().once(start, end)
        TimedKerasIndicator.last_once += time.perf_counter() - t0


class SignalStrategy(bt.Strategy):
    """The same decision code driven by either signal."""

    params = (("signal", "keras"), ("model", None), ("backend", "onnx"))

    def __init__(self):
        if self.p.signal == "keras":
            self.sig = TimedKerasIndicator(self.data, model=self.p.model, backend=self.p.backend)
        else:
            sma = bt.ind.SMA(self.data.close, period=30)
            self.sig = 0.5 + (self.data.close - sma) / self.data.close
        self.side = 0

    def next(self):
        target = threshold_side(self.sig[0], self.side, 0.52, 0.48)
        if target != self.side:
            self.order_target_percent(target=0.95 * target)
            self.side = target


class NaiveStrategy(bt.Strategy):
    """The tutorial approach: features for the window, then ``model.predict()`` in next()."""

    params = (("model", None), ("limit", 300))

    def __init__(self):
        art = self.p.model
        self.art = art
        self.addminperiod(art.warmup)
        self.side = 0
        self.count = 0

    def next(self):
        art = self.art
        size = art.feature_set.lookback + art.window - 1
        if len(self.data) < size:
            return
        bars = {
            c: np.asarray(getattr(self.data, c).get(size=size))
            for c in ("open", "high", "low", "close", "volume")
        }
        feats = art.scaler.transform(art.feature_set.compute(bars)[-art.window :])
        p = float(art.model.predict(feats[None].astype(np.float32), verbose=0)[0, 0])
        target = threshold_side(p, self.side, 0.52, 0.48)
        if target != self.side:
            self.order_target_percent(target=0.95 * target)
            self.side = target
        self.count += 1
        if self.count >= self.p.limit:
            self.env.runstop()


def run(bars, runonce: bool, **params) -> tuple[float, bt.Strategy, int]:
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    cerebro.adddata(make_feed(bars, "ORCL"), name="ORCL")
    cerebro.broker.setcommission(commission=0.001)
    cerebro.addstrategy(params.pop("strategy", SignalStrategy), **params)
    t0 = time.perf_counter()
    strat = cerebro.run()[0]
    return time.perf_counter() - t0, strat, len(strat.data)


def best_rate(repeats: int, bars, runonce: bool, **params) -> float:
    rates = []
    for _ in range(repeats):
        seconds, _, n = run(bars, runonce, **dict(params))
        rates.append(n / seconds)
    return max(rates)


def random_walk(n: int, seed: int = 0) -> pd.DataFrame:
    """Generated daily bars, longer than any real series here (20,000 bars: about 80 years)."""
    rng = np.random.default_rng(seed)
    close = 30.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, n)))
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.005, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.005, n)))
    volume = rng.integers(1_000_000, 5_000_000, n).astype(float)
    index = pd.bdate_range("1940-01-01", periods=n, name="datetime")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def best_seconds(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def model_floor(art, bars, repeats: int) -> tuple[float, float, int]:
    """(feature pass, batched model call over every window, windows), seconds, alone."""
    feats = art.feature_set.compute(bars)
    ends = window_ends(~np.isnan(feats).any(axis=1), art.window)
    x = make_windows(art.scaler.transform(feats), ends, art.window)
    predictor = art.batch_predictor
    predictor.outputs(x)  # warm
    features = best_seconds(repeats, lambda: art.feature_set.compute(bars))
    return features, best_seconds(repeats, lambda: predictor.outputs(x)), len(x)


def vectorised_rows(label: str, bars, art, repeats: int, target: float) -> tuple[list, float]:
    """Plain SMA and KerasIndicator runs interleaved (best of ``repeats`` each, so that load
    from other processes hits both alike), then the model call and the features alone."""
    sma_times, keras_runs = [], []
    for _ in range(repeats):
        sma_times.append(run(bars, True, signal="sma")[0])
        TimedKerasIndicator.last_once = 0.0
        keras_runs.append(
            (run(bars, True, signal="keras", model=art)[0], TimedKerasIndicator.last_once)
        )
    plain = min(sma_times)
    ours, inside = min(keras_runs)
    sma, keras = len(bars) / plain, len(bars) / ours
    features, model, windows = model_floor(art, bars, repeats)
    limit = plain / (ours - inside + model)
    rows = [
        (f"vectorised pass (runonce=True), {label}", "", ""),
        ("  plain Backtrader, SMA signal", f"{sma:10,.0f} bars/s", ""),
        (
            "  KerasIndicator, one batched call",
            f"{keras:10,.0f} bars/s",
            f"{keras / sma:.2f} x plain   (target >= {target:.2f}; model-bound limit {limit:.2f})",
        ),
        (
            "  time inside KerasIndicator.once",
            f"{inside * 1e3:10.1f} ms",
            f"model call alone {model * 1e3:.1f} ms ({model / inside:.0%}): {windows:,} windows, "
            f"{model / windows * 1e6:.1f} us each; feature pass alone {features * 1e3:.1f} ms",
        ),
    ]
    return rows, keras


def load_rows(art, bars) -> list[tuple]:
    """What a backtest given the model directory pays before its first bar: loading the
    artifact and compiling its batched predictor (opening the session or tracing), first in
    the process and then again for the same directory (a second backtest, a sweep's job)."""
    from kerastrader.models.walkforward import load_model

    feats = art.feature_set.compute(bars)
    x = make_windows(art.scaler.transform(feats), np.array([len(bars) - 1]), art.window)

    def setup() -> float:
        t0 = time.perf_counter()
        load_model(path).batch_predictor.outputs(x)
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        path = save_artifact(art, Path(tmp) / "model")
        first, second = setup(), setup()
    return [
        ("fixed cost per backtest: load the model directory + compile", "", ""),
        ("  first time in the process", f"{first * 1e3:10.1f} ms", ""),
        ("  again, same directory and files", f"{second * 1e3:10.1f} ms", ""),
    ]


class TimedStep:
    def __init__(self, inner):
        self.inner, self.times = inner, []

    @property
    def last_outputs(self):
        return self.inner.last_outputs

    def __call__(self, x):
        t0 = time.perf_counter()
        out = self.inner(x)
        self.times.append(time.perf_counter() - t0)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--naive-bars", type=int, default=300)
    args = ap.parse_args()

    bars = load_csv(embedded_data_path())
    cfg = default_config()
    cfg["model"].update(window=30, units=[32], dropout=0.0)
    cfg["training"].update(epochs=1)
    art = train(bars, cfg, {}).artifact
    n_feat = art.n_features
    print(
        f"\ndata: ORCL 1995-2014, {len(bars)} daily bars; model: LSTM(32), window 30, "
        f"{n_feat} features, warm-up {art.warmup} bars; best of {args.repeats} runs\n"
    )

    # Warm both paths once (tracing, ONNX session) so that steady state is measured.
    run(bars, True, signal="keras", model=art)
    run(bars, False, signal="keras", model=art)

    once_rows, keras_once = vectorised_rows("ORCL 5,036 bars", bars, art, args.repeats, 0.85)
    long = random_walk(20_000)
    long_rows, _ = vectorised_rows("generated 20,000 bars", long, art, args.repeats, 0.90)
    once_rows += long_rows
    fixed_rows = load_rows(art, bars)
    sma_next = best_rate(args.repeats, bars, False, signal="sma")
    keras_next = best_rate(args.repeats, bars, False, signal="keras", model=art)

    keras_next_tf = best_rate(1, bars, False, signal="keras", model=art, backend="tf")

    def latencies(backend: str) -> np.ndarray:
        timed = TimedStep(art.step_predictor(backend))
        real_step = art.step_predictor
        art.step_predictor = lambda backend="onnx": timed
        run(bars, False, signal="keras", model=art, backend=backend)
        art.step_predictor = real_step
        return np.array(timed.times) * 1e3

    lat = latencies("onnx")
    lat_tf = latencies("tf")

    seconds, strat, _ = run(bars, False, strategy=NaiveStrategy, model=art, limit=args.naive_bars)
    naive = strat.count / seconds

    rows = [
        *once_rows,
        *fixed_rows,
        ("bar-by-bar pass (runonce=False, as live)", "", ""),
        ("  plain Backtrader, SMA signal", f"{sma_next:10,.0f} bars/s", ""),
        (
            "  KerasIndicator, ONNX Runtime per bar",
            f"{keras_next:10,.0f} bars/s",
            f"{keras_next / sma_next:.2f} x plain   (target >= 0.50)",
        ),
        (
            "  KerasIndicator, compiled tf.function per bar",
            f"{keras_next_tf:10,.0f} bars/s",
            f"{keras_next_tf / sma_next:.2f} x plain   "
            f"(ONNX is {keras_next / keras_next_tf:.1f} x)",
        ),
        (
            "  per-bar inference latency, ONNX Runtime",
            f"p50 {np.percentile(lat, 50):.3f} ms",
            f"p99 {np.percentile(lat, 99):.3f} ms   (target p99 < 1 ms)",
        ),
        (
            "  per-bar inference latency, tf.function",
            f"p50 {np.percentile(lat_tf, 50):.3f} ms",
            f"p99 {np.percentile(lat_tf, 99):.3f} ms   "
            f"(ONNX p50 {np.percentile(lat_tf, 50) / np.percentile(lat, 50):.0f} x faster)",
        ),
        ("naive tutorial: model.predict() in next()", "", ""),
        (
            f"  {strat.count} bars",
            f"{naive:10,.1f} bars/s",
            f"ours bar-by-bar is {keras_next / naive:,.0f} x faster; vectorised "
            f"{keras_once / naive:,.0f} x",
        ),
    ]
    for name, a, b in rows:
        print(f"{name:48s} {a:22s} {b}")


if __name__ == "__main__":
    main()

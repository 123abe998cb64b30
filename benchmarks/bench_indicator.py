"""KerasIndicator against plain Backtrader and against the tutorial's model.predict() per bar.

Run: ``.venv/bin/python benchmarks/bench_indicator.py`` (about three minutes). Everything is
measured side by side in this one run, on the embedded ORCL 1995-2014 daily bars (and a
generated 20,000-bar daily series for the vectorised pass), with an LSTM(32) over windows of
30 bars. Prints ratios; asserts nothing.

In the vectorised pass, the time spent inside ``KerasIndicator.once`` (features, windows, the
model, writing the line) is measured too, next to the model's batched call over the same
windows alone: the "limit" is the ratio the run would reach if everything in the indicator but
that call were free, i.e. the bound the model's own compute sets.

Bar by bar, the features run as one compiled step per bar over a fixed-size state
(``kerastrader.models.feature_stream``) and the model as one ONNX Runtime call on bound
buffers; the path they replaced (each feature's TA-Lib/numpy function recomputed on the
trailing look-back every bar, then ``session.run``) is rebuilt here as ``legacy_artifact`` and
timed in the same run. Per-bar costs are timed inside ``KerasIndicator.next`` (medians).
"""

from __future__ import annotations

import argparse
import math
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
from kerastrader.models.artifact import Artifact, save_artifact  # noqa: E402
from kerastrader.models.features import as_arrays  # noqa: E402
from kerastrader.models.indicator import KerasIndicator  # noqa: E402
from kerastrader.models.inference import onnx_session  # noqa: E402
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


class ProfiledKerasIndicator(KerasIndicator):
    """KerasIndicator with each bar's time in ``next``, in the feature window
    (``DataPredictor.window_now``) and in the model call kept (seconds, one entry a bar)."""

    def __init__(self):
        super().__init__()
        self.times = {"next": [], "features": [], "model": []}
        window_now, feed = self.feed.window_now, self.feed
        step = feed.step

        def timed_window_now():
            t0 = time.perf_counter()
            got = window_now()
            self.times["features"].append(time.perf_counter() - t0)
            return got

        timed: dict[int, TimedStep] = {}

        def timed_step(k):
            if k not in timed:
                timed[k] = TimedStep(step(k))
                timed[k].times = self.times["model"]
            return timed[k]

        feed.window_now, feed.step = timed_window_now, timed_step

    def next(self):
        t0 = time.perf_counter()
        super().next()
        self.times["next"].append(time.perf_counter() - t0)


class SignalStrategy(bt.Strategy):
    """The same decision code driven by either signal."""

    params = (("signal", "keras"), ("model", None), ("backend", "onnx"))

    def __init__(self):
        if self.p.signal == "keras":
            self.sig = TimedKerasIndicator(self.data, model=self.p.model, backend=self.p.backend)
        elif self.p.signal == "profiled":
            self.sig = ProfiledKerasIndicator(self.data, model=self.p.model)
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


# -- the bar-by-bar path before the feature kernels, rebuilt for comparison ------------------
def _old_kinds():
    """Each default kind's function as features.py had it: TA-Lib (its C function, without the
    wrapper's argument checks, as before) and numpy over the arrays it is given."""
    import talib

    ta = {name: getattr(getattr(talib, name), "__wrapped__", getattr(talib, name))
          for name in ("RSI", "BBANDS", "ATR", "SMA", "STDDEV", "EMA")}  # fmt: skip

    def logret(b, n):
        c = b["close"]
        out = np.full(len(c), np.nan)
        out[n:] = np.log(c[n:] / c[:-n])
        return out

    def bbp(b, n):
        upper, _, lower = ta["BBANDS"](b["close"], n, 2.0, 2.0, 0)
        width = upper - lower
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = (b["close"] - lower) / width
        return np.where(width > 0, pct, 0.5)

    def volume_z(b, n):
        v = b["volume"]
        std = ta["STDDEV"](v, n, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (v - ta["SMA"](v, n)) / std
        return np.where(std > 0, z, np.where(np.isnan(std), np.nan, 0.0))

    return {
        "logret": logret,
        "rsi": lambda b, n: ta["RSI"](b["close"], n) / 50.0 - 1.0,
        "bbp": bbp,
        "atr": lambda b, n: ta["ATR"](b["high"], b["low"], b["close"], n) / b["close"],
        "sma_dist": lambda b, n: b["close"] / ta["SMA"](b["close"], n) - 1.0,
        "ema_dist": lambda b, n: b["close"] / ta["EMA"](b["close"], n) - 1.0,
        "volume_z": volume_z,
    }


class LegacyFeatures:
    """The feature set as the bar-by-bar pass used it before: every bar, each feature's
    function on its trailing look-back (``compute_last``); no ``stream``, so DataPredictor
    takes its recompute path. The first window is seeded by the full-history path."""

    def __init__(self, features) -> None:
        self.base = features
        self.lookback, self.columns, self.inputs = (
            features.lookback,
            features.columns,
            features.inputs,
        )
        self.names = features.names
        self.kinds = _old_kinds()

    def __len__(self) -> int:
        return len(self.base)

    def compute(self, bars):
        return self.base.compute(bars)

    def compute_last(self, bars) -> np.ndarray:
        recent = {c: np.asarray(bars[c])[-self.lookback :] for c in self.inputs if c in bars}
        arrays = as_arrays(recent, self.columns)
        row = []
        for f in self.base.features:
            window = {k: arrays[k][-f.lookback :] for k in f.spec.columns}
            row.append(float(self.kinds[f.kind](window, f.period)[-1]))
        return np.array(row)


class LegacyStep:
    """The per-bar ONNX call as it was: ``session.run`` with a feed dict each bar."""

    def __init__(self, onnx_bytes: bytes, window: int, n_features: int) -> None:
        self._session = onnx_session(onnx_bytes)
        self._input = self._session.get_inputs()[0].name
        self._buf = np.empty((1, window, n_features), dtype=np.float32)
        self.last_outputs = None

    def __call__(self, window) -> float:
        self._buf[0] = window
        out = self._session.run(None, {self._input: self._buf})[0]
        self.last_outputs = out = out.reshape(1, -1)
        return float(out[0, 0])


def legacy_artifact(art) -> Artifact:
    """The same model and files, served by the old bar-by-bar path."""
    old = Artifact(model=art.model, metadata=art.metadata, path=art.path, onnx_bytes=art.onnx_bytes)
    old.__dict__["feature_set"] = LegacyFeatures(art.feature_set)
    step = LegacyStep(art.onnx_bytes, art.window, art.n_features)
    old.step_predictor = lambda backend="onnx": step
    return old


def per_bar_us(bars, art) -> dict[str, float]:
    """Median microseconds per bar inside KerasIndicator.next, its feature window and its
    model call, from one profiled bar-by-bar run."""
    _, strat, _ = run(bars, False, signal="profiled", model=art)
    times = strat.sig.times
    return {k: float(np.median(v)) * 1e6 for k, v in times.items()}


def stream_step_us(bars, art, repeats: int) -> float:
    """The feature stream's step alone (push, kernels, scaling, window), per bar."""
    stream = art.feature_set.stream(art.scaler, art.window)
    cols = [np.asarray(bars[c], dtype=float) for c in ("open", "high", "low", "close", "volume")]
    rows = np.column_stack(cols)
    best = math.inf
    for _ in range(repeats):
        stream.reset()
        t0 = time.perf_counter()
        for r in rows:
            stream.bar[:5] = r
            stream.step()
        best = min(best, time.perf_counter() - t0)
    return best / len(rows) * 1e6


def bar_by_bar_rows(bars, art, repeats: int) -> tuple[list, float]:
    """Plain SMA, the feature stream and the old recompute path interleaved (best of
    ``repeats`` each), then the per-bar costs and what bounds the ratio."""
    legacy = legacy_artifact(art)
    run(bars, False, signal="keras", model=legacy)  # warm its session
    plain, new, old = [], [], []
    for _ in range(repeats):
        plain.append(run(bars, False, signal="sma")[0])
        new.append(run(bars, False, signal="keras", model=art)[0])
        old.append(run(bars, False, signal="keras", model=legacy)[0])
    n = len(bars)
    sma, ours, before = n / min(plain), n / min(new), n / min(old)
    cost, cost_old = per_bar_us(bars, art), per_bar_us(bars, legacy)
    step = stream_step_us(bars, art, repeats)
    plain_us, ours_us = 1e6 / sma, 1e6 / ours
    rest, rest_old = (c["next"] - c["features"] - c["model"] for c in (cost, cost_old))
    no_features = plain_us / (ours_us - cost["features"])
    model_bound = plain_us / (ours_us - cost["next"] + cost["model"])
    rows = [
        ("bar-by-bar pass (runonce=False, as live)", "", ""),
        ("  plain Backtrader, SMA signal", f"{sma:10,.0f} bars/s", f"{plain_us:.0f} us a bar"),
        (
            "  KerasIndicator, feature stream + bound ONNX",
            f"{ours:10,.0f} bars/s",
            f"{ours / sma:.2f} x plain   (target >= 0.60; model-bound limit {model_bound:.2f}, "
            f"with free features {no_features:.2f})",
        ),
        (
            "  KerasIndicator, before: look-back recomputed",
            f"{before:10,.0f} bars/s",
            f"{before / sma:.2f} x plain   (same run; the stream is {ours / before:.2f} x faster)",
        ),
        (
            "  per bar in next(), stream",
            f"{cost['next']:10.1f} us",
            f"features {cost['features']:.1f} us (stream step alone {step:.1f} us), "
            f"ONNX call {cost['model']:.1f} us, rest {rest:.1f} us",
        ),
        (
            "  per bar in next(), before",
            f"{cost_old['next']:10.1f} us",
            f"features {cost_old['features']:.1f} us, ONNX call (session.run) "
            f"{cost_old['model']:.1f} us, rest {rest_old:.1f} us",
        ),
    ]
    return rows, ours


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
    next_rows, keras_next = bar_by_bar_rows(bars, art, args.repeats)

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
        *next_rows,
        (
            "  KerasIndicator, compiled tf.function per bar",
            f"{keras_next_tf:10,.0f} bars/s",
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

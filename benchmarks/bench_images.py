"""Image inputs: images rendered per second per kind, and the image models' backtest speed
against plain Backtrader.

Run: ``.venv/bin/python benchmarks/bench_images.py [--repeat 3] [--epochs 3]``. On the
embedded ORCL 1995-2014 daily bars, one cnn2d model per kind at the examples' sizes
(``examples/image_*.toml``: candles 32 x 60, GAF six 30 x 30 channels, recurrence two 30 x 30
channels; Conv2D 16 and 32 filters), trained for a few epochs (speed, not skill, is measured).

For each kind: images per second rendered in the vectorised pass (every window in one
``ImageSpec.model_inputs`` call) and one at a time as the bar-by-bar pass draws them (a stack
of one); then Backtrader runs with a plain SMA signal and with the image model's
``KerasIndicator``, interleaved, best of ``--repeat``, in both passes; the ratio is image bars/s
over SMA bars/s. Also printed: the time ``import pyts.image`` takes in a fresh interpreter
(pyts compiles its numba kernels for every signature at import) and the time of kerastrader's
lazy import (:func:`kerastrader.models.images.import_pyts`).

The ``correlation`` kind draws a universe: ORCL and three generated random walks on ORCL's
dates (the rendering speed does not depend on the values), a 4 x 4 heatmap of 59 returns plus
the member channel, one shared model; its Backtrader rows are a four-feed book with
``SharedKerasIndicator`` against the same book with four SMA signals. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import backtrader as bt  # noqa: E402
import numpy as np  # noqa: E402

from kerastrader.config import default_config, embedded_data_path, validate  # noqa: E402
from kerastrader.feeds.btfeed import make_feed  # noqa: E402
from kerastrader.feeds.loader import load_csv  # noqa: E402
from kerastrader.models.artifact import load_artifact, save_artifact  # noqa: E402
from kerastrader.models.correlation_image import Peers, frame_peers  # noqa: E402
from kerastrader.models.indicator import KerasIndicator  # noqa: E402
from kerastrader.models.shared_indicator import SharedKerasIndicator  # noqa: E402
from kerastrader.models.training import train  # noqa: E402
from kerastrader.models.windows import make_windows, window_ends  # noqa: E402
from kerastrader.strategies.signals import threshold_side  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KINDS = {
    "candles": {
        "features": {"names": ["logret_1"]},
        "model": {"window": 20},
        "image": {"kind": "candles", "size": 32},
    },
    "gaf": {
        "features": {"names": ["logret_1", "rsi_14", "bbp_20", "atr_14", "volume_z_20"]},
        "model": {"window": 30},
        "image": {"kind": "gaf", "features": ["logret_1", "rsi_14", "volume_z_20"],
                  "method": "both"},
    },
    "recurrence": {
        "features": {"names": ["logret_1", "rsi_14", "atr_14"]},
        "model": {"window": 30},
        "image": {"kind": "recurrence", "features": ["logret_1", "rsi_14"]},
    },
    "correlation": {
        "features": {"names": ["logret_1"]},
        "model": {"window": 60},
        "image": {"kind": "correlation"},
    },
}  # fmt: skip


class SignalStrategy(bt.Strategy):
    """The same decision code driven by the image model or a plain SMA signal."""

    params = (("model", None),)

    def __init__(self):
        if self.p.model is not None:
            self.sig = KerasIndicator(self.data, model=self.p.model)
        else:
            sma = bt.ind.SMA(self.data.close, period=30)
            self.sig = 0.5 + (self.data.close - sma) / self.data.close
        self.side = 0

    def next(self):
        target = threshold_side(self.sig[0], self.side, 0.52, 0.48)
        if target != self.side:
            self.order_target_percent(target=0.95 * target)
            self.side = target


class BookStrategy(bt.Strategy):
    """The correlation kind's book: every feed's side from the shared image model, or from
    one plain SMA signal per feed."""

    params = (("model", None),)

    def __init__(self):
        if self.p.model is not None:
            shared = SharedKerasIndicator(*self.datas, model=self.p.model)
            self.sigs = [shared.prediction(i) for i in range(len(self.datas))]
        else:
            self.sigs = [0.5 + (d.close - bt.ind.SMA(d.close, period=30)) / d.close
                         for d in self.datas]  # fmt: skip
        self.sides = [0] * len(self.datas)

    def next(self):
        for i, d in enumerate(self.datas):
            target = threshold_side(self.sigs[i][0], self.sides[i], 0.52, 0.48)
            if target != self.sides[i]:
                self.order_target_percent(d, target=0.95 * target / len(self.datas))
                self.sides[i] = target


def bars_per_second(bars, runonce: bool, model=None) -> float:
    """Bar steps per second of one feed (``bars`` a frame) or a book (a dict of frames)."""
    cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
    book = bars if isinstance(bars, dict) else {"ORCL": bars}
    for sym, frame in book.items():
        cerebro.adddata(make_feed(frame, sym), name=sym)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.addstrategy(BookStrategy if isinstance(bars, dict) else SignalStrategy, model=model)
    t0 = time.perf_counter()
    strat = cerebro.run()[0]
    return len(strat.data) / (time.perf_counter() - t0)


def universe_of(bars) -> dict:
    """ORCL and three generated random walks on its dates."""
    book = {"ORCL": bars}
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.015, len(bars))))
        walk = bars.copy()
        for col in ("open", "high", "low", "close"):
            walk[col] = close * (bars[col] / bars["close"]).to_numpy()
        book[f"W{seed}"] = walk
    return book


def best(repeats: int, fn) -> float:
    """The smallest of ``repeats`` timings of ``fn()``, seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def config_for(kind: str, epochs: int) -> dict:
    cfg = default_config()
    for section, values in KINDS[kind].items():
        cfg[section].update(values)
    cfg["model"].update(kind="cnn2d", input="image", units=[16, 32], kernel_size=3)
    cfg["training"].update(epochs=epochs, patience=epochs)
    validate(cfg)
    return cfg


def import_seconds(code: str) -> float:
    """Wall seconds of ``code`` in a fresh interpreter (CPU seconds would hide nothing here:
    numba's compiler is single-threaded)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def measure(kind: str, bars, args, work: Path) -> tuple:
    """Train the kind's model, then time its renders, its model call and both passes."""
    cfg = config_for(kind, args.epochs)
    book = universe_of(bars) if kind == "correlation" else None
    t0 = time.perf_counter()
    result = train(book or bars, cfg, {"symbol": "ORCL"})
    trained = time.perf_counter() - t0
    art = load_artifact(save_artifact(result.artifact, work / kind))
    spec = art.image
    feats = art.feature_set.compute(bars)
    ends = window_ends(~np.isnan(feats).any(axis=1), art.window)
    windows = make_windows(art.scaler.transform(feats), ends, art.window)
    raw = {c: bars[c].to_numpy() for c in spec.columns}
    peers = frame_peers(book, spec.universe)["ORCL"] if book else None
    spec.model_inputs(windows[:10], raw, ends[:10], peers)  # warm (pyts imported, kernels)
    vec = best(args.repeat, lambda: spec.model_inputs(windows, raw, ends, peers))
    k = min(args.single, len(ends))

    def one_at_a_time():
        for i in range(len(ends) - k, len(ends)):
            t = ends[i]
            recent = {c: v[t - spec.window + 1 : t + 1] for c, v in raw.items()}
            near = None
            if peers is not None:  # the universe's closes at the window's rows, as live
                near = Peers(peers.closes[t - spec.window + 1 : t + 1], peers.member)
            spec.last_input(windows[i], recent, near)

    single = best(args.repeat, one_at_a_time)
    predictor = art.batch_predictor
    x = spec.model_inputs(windows, raw, ends, peers)
    predictor.outputs(x)
    model = best(args.repeat, lambda: predictor.outputs(x))
    rates: dict[str, list[float]] = {"sma_once": [], "img_once": [], "sma_step": [],
                                     "img_step": []}  # fmt: skip
    fed = book or bars
    bars_per_second(fed, True, art)  # warm the compiled predictors
    for _ in range(args.repeat):  # interleaved: the same load for both
        rates["sma_once"].append(bars_per_second(fed, True))
        rates["img_once"].append(bars_per_second(fed, True, art))
        rates["sma_step"].append(bars_per_second(fed, False))
        rates["img_step"].append(bars_per_second(fed, False, art))
    r = {key: max(v) for key, v in rates.items()}
    print(f"{kind}: trained in {trained:.1f} s, image {spec.shape}", flush=True)
    return kind, spec.shape, len(ends), trained, len(ends) / vec, k / single, len(ends) / model, r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--single", type=int, default=500, help="one-at-a-time renders timed")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    lazy = "from kerastrader.models.images import import_pyts; import_pyts()"
    print(f"import pyts.image in a fresh interpreter: {import_seconds('import pyts.image'):.1f} s"
          f" (every kernel compiled); as kerastrader imports it: {import_seconds(lazy):.1f} s "
          "(compiled on first use, numba's disk cache)")  # fmt: skip
    bars = load_csv(embedded_data_path())
    work = Path(tempfile.mkdtemp(prefix="bench-images-"))
    rows = [measure(kind, bars, args, work) for kind in args.kinds]
    print()
    print(f"ORCL {len(bars)} daily bars; best of {args.repeat}; load average now "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    head = (f"{'kind':<11}{'image':>13}{'windows':>9}{'img/s vec':>11}{'img/s 1x1':>11}"
            f"{'model win/s':>12}{'SMA once':>10}{'img once':>10}{'ratio':>7}"
            f"{'SMA step':>10}{'img step':>10}{'ratio':>7}")  # fmt: skip
    print(head)
    for kind, shape, n, _, vec, single, model, r in rows:
        shape_s = "x".join(str(s) for s in shape)
        print(f"{kind:<11}{shape_s:>13}{n:>9}{vec:>11,.0f}{single:>11,.0f}{model:>12,.0f}"
              f"{r['sma_once']:>10,.0f}{r['img_once']:>10,.0f}"
              f"{r['img_once'] / r['sma_once']:>7.2f}"
              f"{r['sma_step']:>10,.0f}{r['img_step']:>10,.0f}"
              f"{r['img_step'] / r['sma_step']:>7.2f}")  # fmt: skip
    print("img/s vec: every window rendered in one model_inputs call; img/s 1x1: a stack of one")
    print("per call, as bar by bar; model win/s: the batched ONNX call alone; once/step: bars/s")
    print("in Backtrader's vectorised / bar-by-bar pass; ratio: image model over plain SMA.")
    print("correlation: a four-instrument book (ORCL + 3 generated walks), bar steps/s, one")
    print("shared model for the book against four SMA signals; renders are ORCL's images.")


if __name__ == "__main__":
    main()

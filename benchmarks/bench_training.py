"""Training throughput per model family, and walk-forward wall time for 10 folds.

Run: ``.venv/bin/python benchmarks/bench_training.py`` (a few minutes on 2 cores). On the
embedded ORCL 1995-2014 daily bars with the default sizes (window 30, units [32, 16], batch 64,
nine features). Each family trains a fixed number of epochs (no early stopping) through the
one training path; throughput is training windows x epochs / fit seconds, measured side by
side in this run. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from kerastrader.config import default_config, embedded_data_path  # noqa: E402
from kerastrader.feeds.loader import load_csv  # noqa: E402
from kerastrader.models.training import train  # noqa: E402
from kerastrader.models.walkforward import walk_forward  # noqa: E402

FAMILIES = [
    ("lstm", {}),
    ("gru", {}),
    ("gru", {"bidirectional": True}),
    ("dense", {}),
    ("cnn", {}),
    ("transformer", {"units": [32]}),
]


class FitTimer(keras.callbacks.Callback):
    """Seconds spent in epochs (fit only: not data preparation, ONNX export or metrics)."""

    def on_train_begin(self, logs=None):
        self.seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._t0


def family_rate(bars, kind: str, extra: dict, epochs: int) -> tuple[float, int, float]:
    cfg = default_config()
    cfg["model"].update(kind=kind, **extra)
    cfg["training"].update(epochs=epochs, patience=epochs + 1)
    timer = FitTimer()
    t0 = time.perf_counter()
    result = train(bars, cfg, {}, callbacks=[timer])
    total = time.perf_counter() - t0
    n = result.artifact.metadata["training"]["samples"]["train"]
    return n * epochs / timer.seconds, n, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--folds", type=int, default=10)
    args = ap.parse_args()
    logging.disable(logging.INFO)

    bars = load_csv(embedded_data_path())
    print(
        f"\ndata: ORCL 1995-2014, {len(bars)} daily bars; window 30, units [32, 16], batch 64, "
        f"{args.epochs} epochs per family\n"
    )
    print(f"{'family':26s} {'windows/s':>12s} {'train windows':>14s} {'whole train()':>14s}")
    for kind, extra in FAMILIES:
        name = kind + (" (bidirectional)" if extra.get("bidirectional") else "")
        rate, n, total = family_rate(bars, kind, extra, args.epochs)
        print(f"{name:26s} {rate:12,.0f} {n:14,d} {total:12.1f} s")

    cfg = default_config()
    cfg["walkforward"].update(
        enabled=True, train_bars=1500, validation_bars=250, step=250, folds=args.folds
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = walk_forward({"ORCL": bars}, copy.deepcopy(cfg), {}, Path(tmp) / "wf")
        seconds = time.perf_counter() - t0
    epochs = sum(f.info["epochs"] for f in model.folds)
    print(
        f"\nwalk-forward, {len(model.folds)} folds (LSTM [32, 16], expanding from 1,500 bars, "
        f"retrain every 250, up to 30 epochs with early stopping):\n"
        f"  {seconds:.1f} s wall, {seconds / len(model.folds):.1f} s per fold, "
        f"{epochs} epochs in all"
    )


if __name__ == "__main__":
    main()

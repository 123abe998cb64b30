"""Training throughput per model family, walk-forward wall time for 10 folds, and the
speed-ups a user can choose, each with the validation loss and test metrics it reached.

Run: ``.venv/bin/python benchmarks/bench_training.py`` (10-20 minutes on 2 cores;
``--only speed`` runs the speed-up table alone). On the embedded ORCL 1995-2014 daily bars
with the default sizes (window 30, units [32, 16], batch 64, nine features). Each family
trains a fixed number of epochs (no early stopping) through the one training path;
throughput is training windows x epochs / fit seconds, measured side by side in this run.

The speed-up table trains the default experiment (up to 30 epochs with early stopping) at
three seeds, which measures seed noise, and once per speed-up tried (``training.jit_compile``,
``training.pipeline = "tf.data"``, larger ``training.batch_size``,
``training.steps_per_execution``), interleaved with the seeded runs so that load on the
shared machine hits both alike: steady-state windows/s (median epoch), the first epoch (XLA
compiles there), the whole ``train()``, epochs run, the best validation loss and the test
metrics. Prints numbers; asserts nothing.
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
import numpy as np  # noqa: E402

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

# (row, [training] values). Rows named "default" are the default run at another seed.
SPEEDUPS = [
    ("default, seed 42", {"seed": 42}),
    ("jit_compile = true (XLA)", {"jit_compile": True}),
    ('pipeline = "tf.data" (prefetch)', {"pipeline": "tf.data"}),
    ("default, seed 43", {"seed": 43}),
    ("batch_size = 128", {"batch_size": 128}),
    ("batch_size = 256", {"batch_size": 256}),
    ("default, seed 44", {"seed": 44}),
    ("steps_per_execution = 8", {"steps_per_execution": 8}),
    (
        "XLA + tf.data + steps 8",
        {"jit_compile": True, "pipeline": "tf.data", "steps_per_execution": 8},
    ),  # fmt: skip
]


class FitTimer(keras.callbacks.Callback):
    """Seconds spent in epochs (fit only: not data preparation, ONNX export or metrics)."""

    def on_train_begin(self, logs=None):
        self.seconds = 0.0
        self.epochs: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self._t0)
        self.seconds += self.epochs[-1]


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


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


def speedup_row(bars, values: dict) -> dict:
    cfg = default_config()
    cfg["training"].update(values)
    timer = FitTimer()
    t0 = time.perf_counter()
    result = train(bars, cfg, {}, callbacks=[timer])
    total = time.perf_counter() - t0
    meta = result.artifact.metadata
    test = meta["metrics"]["test"]
    return {
        "rate": meta["training"]["samples"]["train"] / float(np.median(timer.epochs)),
        "first": timer.epochs[0],
        "total": total,
        "epochs": meta["training"]["epochs_run"],
        "val_loss": meta["training"]["best_val_loss"],
        "accuracy": test["accuracy"],
        "auc": test["roc_auc"],
    }


def speedups(bars) -> None:
    print(
        "speed-ups on the default experiment (LSTM [32, 16], window 30, batch 64, up to 30 "
        f"epochs with early stopping); load average {load()} at start"
    )
    print(f"  {'run':33s} {'windows/s':>9s} {'vs default':>10s} {'1st epoch':>9s} "
          f"{'train()':>8s} {'epochs':>6s} {'val loss':>8s} {'test acc':>8s} "
          f"{'test AUC':>8s}")  # fmt: skip
    rows = [(name, speedup_row(bars, values)) for name, values in SPEEDUPS]
    seeds = [r for name, r in rows if name.startswith("default")]
    base = float(np.median([r["rate"] for r in seeds]))
    for name, r in rows:
        print(
            f"  {name:33s} {r['rate']:9,.0f} {r['rate'] / base:9.2f}x {r['first']:8.1f}s "
            f"{r['total']:7.1f}s {r['epochs']:6d} {r['val_loss']:8.4f} {r['accuracy']:8.3f} "
            f"{r['auc']:8.3f}"
        )
    spread = {k: (min(r[k] for r in seeds), max(r[k] for r in seeds))
              for k in ("val_loss", "accuracy", "auc")}  # fmt: skip
    print(
        "  seed noise, 3 seeds of the default: "
        + ", ".join(f"{k} {lo:.4f} to {hi:.4f}" for k, (lo, hi) in spread.items())
    )
    for name, r in rows:
        if not name.startswith("default"):
            inside = all(lo <= r[k] <= hi for k, (lo, hi) in spread.items())
            print(f"  {name:33s} val loss, test accuracy and AUC inside that range: {inside}")
    print(f"  load average {load()} at the end")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--only", choices=["all", "speed"], default="all")
    args = ap.parse_args()
    logging.disable(logging.INFO)

    bars = load_csv(embedded_data_path())
    if args.only == "speed":
        print(f"\ndata: ORCL 1995-2014, {len(bars)} daily bars\n")
        speedups(bars)
        return
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
        f"{epochs} epochs in all\n"
    )
    speedups(bars)


if __name__ == "__main__":
    main()

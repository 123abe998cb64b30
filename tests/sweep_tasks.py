"""Tasks for the executor tests: importable by spawned pool workers and Ray workers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def double(x: int) -> int:
    return 2 * x


def shared_sum(frame, offset: float) -> tuple[float, int]:
    """The shared value's sum, and the worker's pid (the value is shipped once per worker)."""
    return float(np.asarray(frame).sum()) + offset, os.getpid()


def die_once(marker: str, value: int) -> int:
    """The first attempt kills its worker process; the retry returns ``value``."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)
    return value


def always_die() -> None:
    os._exit(1)


def raise_value_error() -> None:
    raise ValueError("bad value\nsecond line")


def hog(mb: int) -> int:
    """Hold ``mb`` MB resident for a few seconds (the watchdog checks every 0.5 s)."""
    block = np.ones(mb * 2**20 // 8)
    time.sleep(3)
    return int(block[0])


def tiny_builder(values: dict):
    """Flatten -> Dense(units...) -> Dense(1, sigmoid) over 10 x 3 windows (tuning tests)."""
    import keras

    layers = [keras.Input((10, 3)), keras.layers.Flatten()]
    for units in values.get("units", [8]):
        layers.append(keras.layers.Dense(units, activation=values.get("activation", "relu")))
        layers.append(keras.layers.Dropout(values.get("dropout", 0.0)))
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(values.get("learning_rate", 1e-2)), "binary_crossentropy")
    return model

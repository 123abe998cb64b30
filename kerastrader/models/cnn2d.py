"""The ``cnn2d`` family: Conv2D stacks with pooling over rendered window images.

The model's input is the image flattened to (rows, columns x channels) (see
:mod:`kerastrader.models.images`); :class:`ImageFront` reshapes it back inside the graph, so
the saved model, its ONNX export and both backtest passes take the same rank-3 input as
every other family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras


@dataclass(frozen=True)
class ImageFront:
    """The first layer of an image model: (rows, columns x channels) -> (rows, columns,
    channels). A dataclass, not a closure, so a model builder holding it pickles."""

    shape: tuple[int, int, int]

    def __call__(self, x):
        return keras.layers.Reshape(tuple(self.shape), name="image")(x)


def cnn2d_body(
    x,
    units: Sequence[int],
    dropout: float,
    activation: str,
    kernel_size: int,
    pool: int = 2,
    pooling: str = "max",
):
    """One Conv2D block per entry of ``units`` (its filters, ``same`` padding), each followed
    by ``pool`` x ``pool`` pooling while the image is still at least that large, then
    flattened: where a pattern sits (the newest bars are on the right) stays visible."""
    layer = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
    for i, u in enumerate(units):
        x = keras.layers.Conv2D(
            u, kernel_size, padding="same", activation=activation, name=f"conv2d_{i}"
        )(x)
        if pool > 1 and min(x.shape[1], x.shape[2]) >= pool:
            x = layer(pool, name=f"pool_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return keras.layers.Flatten(name="flatten")(x)

"""An autoencoder over feature rows: dimension reduction and an anomaly score as model inputs.

It is fitted on the scaled feature rows of the training period only (a row is one bar), then
frozen and built into the front of the predictive model, so the saved ``model.keras``, the
ONNX export and the bar-by-bar pass carry it without any extra step. Three uses:

- ``bottleneck``: the body reads the encoder's codes instead of the features;
- ``error``: the body reads the features plus the reconstruction error (an anomaly score);
- ``both``: the codes plus the reconstruction error.

Only built-in layers are used (no ``Lambda``), so the model loads with Keras safe mode on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kerastrader.errors import ConfigError

log = logging.getLogger(__name__)

USES = ("bottleneck", "error", "both")


@dataclass
class FittedAutoencoder:
    """Weights of a dense autoencoder fitted on training rows, and how it was fitted."""

    n_features: int
    hidden: list[int]
    bottleneck: int
    use: str
    weights: list[list[np.ndarray]]  # per Dense layer (encoder then decoder): [kernel, bias]
    info: dict[str, Any]

    def _layers(self):
        import keras

        sizes = [*self.hidden, self.bottleneck, *reversed(self.hidden), self.n_features]
        n_enc = len(self.hidden) + 1
        layers = []
        for i, size in enumerate(sizes):
            last = i == len(sizes) - 1
            name = f"ae_enc_{i}" if i < n_enc else f"ae_dec_{i - n_enc}"
            layers.append(keras.layers.Dense(size, activation=None if last else "tanh", name=name))
        return layers, n_enc

    def front(self) -> Callable:
        """A function from the model's input tensor (batch, window, features) to the rows the
        body reads. Dense layers act on the last axis, so every bar of the window is encoded
        alone, exactly as during fitting."""
        import keras

        def apply(inputs):
            layers, n_enc = self._layers()
            x = inputs
            outputs = []
            for layer, w in zip(layers, self.weights, strict=True):
                x = layer(x)
                layer.set_weights(w)
                layer.trainable = False
                outputs.append(x)
            codes, recon = outputs[n_enc - 1], outputs[-1]
            diff = keras.layers.Subtract(name="ae_residual")([inputs, recon])
            square = keras.layers.Multiply(name="ae_squared")([diff, diff])
            mean = keras.layers.Dense(1, use_bias=False, name="ae_error", trainable=False)
            err = mean(square)
            mean.set_weights([np.full((self.n_features, 1), 1.0 / self.n_features, np.float32)])
            if self.use == "bottleneck":
                return codes
            if self.use == "error":
                return keras.layers.Concatenate(name="ae_features")([inputs, err])
            return keras.layers.Concatenate(name="ae_features")([codes, err])

        return apply

    def to_dict(self) -> dict[str, Any]:
        return {
            "use": self.use,
            "hidden": self.hidden,
            "bottleneck": self.bottleneck,
            **self.info,
        }


def fit_autoencoder(
    rows: np.ndarray,
    use: str,
    bottleneck: int,
    hidden: Sequence[int] = (),
    epochs: int = 20,
    batch_size: int = 64,
    validation_rows: np.ndarray | None = None,
    patience: int = 3,
) -> FittedAutoencoder:
    """Fit a dense autoencoder on scaled training rows (no NaN) and return its weights.

    The caller seeds the run (``seed_everything``) so the fit is reproducible.
    """
    import keras

    if use not in USES:
        raise ConfigError(f"model.autoencoder = {use!r}: expected '', {', '.join(USES)}")
    n_features = rows.shape[1]
    if not 1 <= bottleneck < n_features:
        raise ConfigError(
            f"model.bottleneck = {bottleneck}: must be at least 1 and below the "
            f"{n_features} features"
        )
    ae = FittedAutoencoder(n_features, list(hidden), int(bottleneck), use, [], {})
    layers, _ = ae._layers()
    inp = keras.Input(shape=(n_features,), name="row")
    x = inp
    for layer in layers:
        x = layer(x)
    model = keras.Model(inp, x, name="autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    rows = np.asarray(rows, dtype=np.float32)
    fit_args: dict[str, Any] = {}
    callbacks = []
    if validation_rows is not None and len(validation_rows):
        val = np.asarray(validation_rows, dtype=np.float32)
        fit_args["validation_data"] = (val, val)
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    history = model.fit(
        rows,
        rows,
        epochs=int(epochs),
        batch_size=int(batch_size),
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
        **fit_args,
    )
    ae.weights = [layer.get_weights() for layer in layers]
    recon = model(rows, training=False).numpy()
    err = ((rows - recon) ** 2).mean(axis=1)
    ae.info = {
        "epochs_run": len(history.history["loss"]),
        "train_mse": float(err.mean()),
        "train_rows": int(len(rows)),
    }
    if "val_loss" in history.history:
        ae.info["validation_mse"] = float(np.min(history.history["val_loss"]))
    log.info(
        "autoencoder %d -> %d fitted on %d training rows (reconstruction MSE %.4f)",
        n_features,
        bottleneck,
        len(rows),
        ae.info["train_mse"],
    )
    return ae

"""What a model predicts: the label, the output layer, the loss and the one-number prediction.

Three heads share one training path, one indicator and one ONNX export:

- ``direction``: P(Close[t+h] > Close[t]) from a sigmoid unit (binary cross-entropy);
- ``three_class``: P(down), P(flat), P(up) from a softmax, where "flat" is a forward h-bar
  return within +/- ``dead_band``. The indicator's prediction is P(up) + P(flat) / 2: 0.5 is
  neutral, on the same scale as the direction model, so the same thresholds mean the same thing;
- ``regression``: the forward h-bar return Close[t+h] / Close[t] - 1 (mean squared error). The
  output layer rescales by the training targets' mean and standard deviation, so the network
  learns in standard units and the prediction comes out as a return.

A label at bar t looks only at bars after t, and only as the target; the last ``horizon`` bars
have none (NaN) rather than a made-up one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kerastrader.errors import ConfigError
from kerastrader.models.evaluation import (
    classification_metrics,
    multiclass_metrics,
    regression_metrics,
)
from kerastrader.models.labels import forward_return

HEADS = ("direction", "three_class", "regression")


@dataclass(frozen=True)
class Head:
    kind: str = "direction"
    horizon: int = 1
    dead_band: float = 0.0
    # True reproduces the tutorials' ``pct_change(-1) > 0``: 1 when Close[t] > Close[t+h],
    # a DOWN label that a strategy then reads as "up" (study A). Direction labels only.
    invert: bool = False

    def __post_init__(self) -> None:
        if self.kind not in HEADS:
            raise ConfigError(f"label.kind = {self.kind!r}: expected one of {', '.join(HEADS)}")
        if int(self.horizon) < 1:
            raise ConfigError(f"label.horizon must be at least 1, not {self.horizon}")
        if self.dead_band < 0:
            raise ConfigError(f"label.dead_band must not be negative, not {self.dead_band}")
        if self.invert and self.kind != "direction":
            raise ConfigError("label.invert applies to label.kind = 'direction' only")

    @classmethod
    def from_config(cls, label: dict[str, Any]) -> Head:
        return cls(label["kind"], int(label["horizon"]), float(label.get("dead_band", 0.0)),
                   bool(label.get("invert", False)))  # fmt: skip

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Head:
        label = meta.get("label", {})
        return cls(label.get("kind", "direction"), int(label.get("horizon", 1)),
                   float(label.get("dead_band", 0.0)),
                   bool(label.get("invert", False)))  # fmt: skip

    @property
    def task(self) -> str:
        return "regression" if self.kind == "regression" else "classification"

    @property
    def n_outputs(self) -> int:
        return 3 if self.kind == "three_class" else 1

    @property
    def definition(self) -> str:
        h = self.horizon
        ahead = "Close[t+1]" if h == 1 else f"Close[t+{h}]"
        if self.kind == "direction" and self.invert:
            return (f"INVERTED: 1 when Close[t] > {ahead} (pct_change(-{h}) > 0, a down label), "
                    f"else 0; none for the last {h} bar(s)")  # fmt: skip
        if self.kind == "direction":
            return f"1 when {ahead} > Close[t], else 0; none for the last {h} bar(s)"
        if self.kind == "three_class":
            return (
                f"r = {ahead} / Close[t] - 1; 0 (down) when r < -{self.dead_band:g}, 2 (up) when "
                f"r > {self.dead_band:g}, else 1 (flat); none for the last {h} bar(s)"
            )
        return f"{ahead} / Close[t] - 1; none for the last {h} bar(s)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "horizon": self.horizon,
            "dead_band": self.dead_band,
            **({"invert": True} if self.invert else {}),
            "definition": self.definition,
        }

    # -- labels ------------------------------------------------------------------------------
    def labels(self, close: np.ndarray) -> np.ndarray:
        """The target of every bar (float; NaN where the future is not in the data)."""
        r = forward_return(np.asarray(close, dtype=float), self.horizon)
        if self.kind == "regression":
            return r
        out = np.full(len(r), np.nan)
        known = ~np.isnan(r)
        if self.kind == "direction" and self.invert:
            out[known] = (r[known] < 0).astype(float)
        elif self.kind == "direction":
            out[known] = (r[known] > 0).astype(float)
        else:
            out[known] = np.where(r[known] > self.dead_band, 2.0,
                                  np.where(r[known] < -self.dead_band, 0.0, 1.0))  # fmt: skip
        return out

    # -- model output ------------------------------------------------------------------------
    def output_layers(self, x, target_mean: float = 0.0, target_std: float = 1.0):
        """The head's layers on top of a body's output tensor."""
        import keras

        if self.kind == "direction":
            return keras.layers.Dense(1, activation="sigmoid", name="p_up")(x)
        if self.kind == "three_class":
            return keras.layers.Dense(3, activation="softmax", name="p_down_flat_up")(x)
        z = keras.layers.Dense(1, name="z_return")(x)
        return keras.layers.Rescaling(
            scale=float(target_std), offset=float(target_mean), name="forward_return"
        )(z)

    def compile_args(self) -> dict[str, Any]:
        import keras

        if self.kind == "direction":
            metrics = ["accuracy", keras.metrics.AUC(name="auc")]
            return {"loss": "binary_crossentropy", "metrics": metrics}
        if self.kind == "three_class":
            return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
        return {"loss": "mse", "metrics": ["mae"]}

    def check_output_shape(self, shape: tuple, where: str) -> None:
        if tuple(shape)[-1] != self.n_outputs or len(shape) != 2:
            raise ConfigError(
                f"{where}: output shape {tuple(shape)}, the {self.kind} head needs "
                f"(None, {self.n_outputs})"
            )

    def score(self, outputs: np.ndarray) -> np.ndarray:
        """The indicator's one number per bar from the model's outputs (n, k)."""
        out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
        if self.kind == "three_class":
            return out[:, 2] + 0.5 * out[:, 1]
        return out[:, 0]

    def metrics(self, y: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
        """Out-of-sample diagnostics for this head (``task`` says which family)."""
        out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
        if self.kind == "direction":
            m = classification_metrics(y, out[:, 0])
        elif self.kind == "three_class":
            m = multiclass_metrics(y, out)
        else:
            m = regression_metrics(y, out[:, 0])
        m["task"] = self.kind
        return m

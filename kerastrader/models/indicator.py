"""``KerasIndicator``: the only bridge between a Keras model and Backtrader.

Its line ``prediction`` is the model's output for each bar (for the direction model, the
probability that the next bar closes higher), NaN until the warm-up (feature look-back plus
window) is complete. It serves both of Backtrader's passes:

- ``once`` (vectorised, the default backtest): features for every bar with the full-history
  path, every window stacked, one batched call of a traced ``tf.function``;
- ``next`` (bar by bar, as in live trading): the new bar's feature row from the trailing
  look-back, pushed into a ring of the last W scaled rows, one compiled call (ONNX Runtime).

Use it in any Backtrader strategy::

    class MyStrategy(bt.Strategy):
        def __init__(self):
            self.p_up = KerasIndicator(self.data, model="runs/orcl/model")

        def next(self):
            if self.p_up[0] > 0.55 and not self.position:
                self.buy()
"""

from __future__ import annotations

import math
from pathlib import Path

import backtrader as bt
import numpy as np

from kerastrader.models.artifact import Artifact, load_artifact
from kerastrader.models.windows import make_windows, window_ends


def _as_artifact(model: Artifact | str | Path) -> Artifact:
    if isinstance(model, Artifact):
        return model
    if model is None:
        raise TypeError("KerasIndicator needs model= (an artifact directory or Artifact)")
    return load_artifact(model)


class KerasIndicator(bt.Indicator):
    """A Keras model's prediction per bar, from causal features of the data feed."""

    lines = ("prediction",)
    params = (
        ("model", None),  # artifact directory or a loaded Artifact
        ("backend", "onnx"),  # bar-by-bar inference: "onnx" or "tf"
    )
    plotinfo = dict(subplot=True, plotname="model")

    def __init__(self) -> None:
        self.artifact = _as_artifact(self.p.model)
        self.features = self.artifact.feature_set
        self.scaler = self.artifact.scaler
        self.window = self.artifact.window
        self.addminperiod(self.artifact.warmup)
        self._step = None
        self._ring = np.empty((self.window, len(self.features)), dtype=np.float32)
        self._ring_bar = -1  # len(self) when the ring's last row was computed

    # -- vectorised pass -------------------------------------------------------------------
    def once(self, start: int, end: int) -> None:
        if end <= start:
            return
        lo = max(0, start - (self.features.lookback - 1) - (self.window - 1))
        bars = {
            c: np.asarray(getattr(self.data, c).array[lo:end], dtype=np.float64)
            for c in self.features.columns
        }
        feats = self.features.compute(bars)
        ends = window_ends(~np.isnan(feats).any(axis=1), self.window)
        ends = ends[ends + lo >= start]
        if len(ends) == 0:
            return
        x = make_windows(self.scaler.transform(feats), ends, self.window)
        preds = self.artifact.batch_predictor(x)
        out = self.lines.prediction.array
        for i, p in zip(ends + lo, preds, strict=True):
            out[i] = p

    # -- bar-by-bar pass -------------------------------------------------------------------
    def _recent(self, size: int) -> dict[str, np.ndarray]:
        return {
            c: np.asarray(getattr(self.data, c).get(size=size), dtype=np.float64)
            for c in self.features.columns
        }

    def next(self) -> None:
        if self._step is None:
            self._step = self.artifact.step_predictor(self.p.backend)
        bar = len(self)
        if self._ring_bar == bar - 1:
            row = self.features.compute_last(self._recent(self.features.lookback))
            self._ring[:-1] = self._ring[1:]
            self._ring[-1] = self.scaler.transform(row)
        else:
            # First bar after warm-up (or a gap): the last W rows from the full-history path.
            size = self.features.lookback + self.window - 1
            feats = self.features.compute(self._recent(size))
            self._ring[:] = self.scaler.transform(feats[-self.window :])
        self._ring_bar = bar
        if np.isnan(self._ring).any():
            self.lines.prediction[0] = math.nan
            return
        self.lines.prediction[0] = self._step(self._ring)

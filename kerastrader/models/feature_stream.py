"""The bar-by-bar path of a feature set: one bar in, the model's scaled window out.

A :class:`FeatureStream` keeps a fixed-size buffer of the last bars (the feature set's
look-back, compacted once every few hundred bars) and the last ``window`` scaled feature rows.
Each new bar costs one compiled call (:func:`kerastrader.models.feature_kernels.stream_step`):
total-return adjustment, the one-bar inputs, every feature's kernel on its window, scaling,
and the window shift. The kernels are those the full-history path walks over the history, so
a stream fed bar by bar gives :meth:`FeatureSet.compute`'s rows (tested to 1e-9), and a stream
seeded with the last ``lookback + window - 1`` bars of a live backfill gives the backtest's.

Kinds served by a plain function (no kernel) are computed on the buffer's trailing bars in
Python, bar by bar, at the function's own cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from kerastrader.models import feature_kernels as fk

if TYPE_CHECKING:
    from kerastrader.models.features import FeatureSet
    from kerastrader.models.scaler import FittedScaler

# The per-bar values a stream takes, in the order of FeatureStream.bar.
BAR_FIELDS = ("open", "high", "low", "close", "volume", "dividend", "split")
_NO_ACTION = {"dividend": 0.0, "split": 1.0}
_SLACK = 256  # bars appended between two compactions of the buffer (at least)


class FeatureStream:
    """One feed's features, bar by bar, for one feature set, scaler and window.

    Write the new bar's raw values into :attr:`bar` (``BAR_FIELDS`` order; a column the
    features do not read may stay NaN) and call :meth:`step`; :attr:`window` then holds the
    last ``window`` scaled rows (float32, the model's input) and :attr:`row` the new bar's
    unscaled features. ``adjust`` turns on the total-return adjustment (the feed carries
    dividends and splits).
    """

    def __init__(
        self,
        features: FeatureSet,
        scaler: FittedScaler | None = None,
        window: int = 1,
        adjust: bool = False,
    ) -> None:
        n = len(features)
        self.features = features
        self._adjust = bool(adjust)
        plan = features.plan
        self._plan, self._weights = plan.rows, plan.weights
        self._pure = len(plan) == n  # every feature has a kernel: one call per bar
        self._compiled = features.compiled
        self._functions = [(i, f) for i, f in enumerate(features.features) if not f.compiled]
        keep = max(features.lookback, 2)
        self._buf = np.full((fk.N_SERIES, keep + max(keep, _SLACK)), np.nan)
        self._istate = np.zeros(5, dtype=np.int64)
        self._istate[fk.KEEP] = keep
        self._istate[fk.LOOKBACK] = features.lookback
        self._fstate = np.full(4, np.nan)
        self._krow = np.empty(len(plan))
        self.row = np.full(n, np.nan)
        mean = np.zeros(n) if scaler is None else scaler.mean
        scale = np.ones(n) if scaler is None else scaler.scale
        self._mean = np.ascontiguousarray(mean, dtype=np.float64)
        self._scale = np.ascontiguousarray(scale, dtype=np.float64)
        self.window = np.full((int(window), n), np.nan, dtype=np.float32)
        self.bar = np.array([np.nan] * 5 + [0.0, 1.0])
        self.ready = False  # the window has no NaN row
        self._bind_args()

    @property
    def adjust(self) -> bool:
        """Whether bars are total-return adjusted (dividend and split slots of :attr:`bar`)."""
        return self._adjust

    @adjust.setter
    def adjust(self, value: bool) -> None:
        self._adjust = bool(value)
        self._bind_args()

    def _bind_args(self) -> None:
        # The per-bar call's arguments, bound once (attribute loads cost per bar too).
        self._step_args = (self._buf, self._istate, self._fstate, self.bar, self.adjust,
                           self._plan, self._weights, self.row, self._mean, self._scale,
                           self.window)  # fmt: skip

    @property
    def seed_size(self) -> int:
        """Bars a stream needs before its first full window."""
        return self.features.lookback + len(self.window) - 1

    def reset(self) -> None:
        fk.stream_reset(self._istate, self._fstate)
        self.window[:] = np.nan
        self.ready = False

    def step(self) -> bool:
        """Push :attr:`bar`; True when the window is complete (no NaN row)."""
        if self._pure:
            self.ready = fk.stream_step(*self._step_args)
            return self.ready
        fk.stream_push(self._buf, self._istate, self._fstate, self.bar, self.adjust,
                       self._plan, self._weights, self._krow)  # fmt: skip
        self.row[self._compiled] = self._krow
        self._functions_row()
        self.ready = fk.window_append(self.row, self._mean, self._scale, self.window,
                                      self._istate)  # fmt: skip
        return self.ready

    def _functions_row(self) -> None:
        size, count = self._istate[fk.SIZE], self._istate[fk.COUNT]
        for i, f in self._functions:
            m = f.lookback
            if count < max(m, self.features.lookback):
                self.row[i] = np.nan
                continue
            cols = {c: self._buf[fk.COLUMNS_ROW[c], size - m : size] for c in f.spec.columns}
            self.row[i] = float(np.asarray(f.spec.fn(cols, f.period), dtype=float)[-1])

    def seed(self, bars: Mapping[str, np.ndarray]) -> bool:
        """Start again from ``bars`` (columns of raw values, oldest first; dividends and
        splits when the feed has them, which turns the total-return adjustment on), pushing
        each; True when the window is complete."""
        self.reset()
        self.adjust = any(c in bars for c in _NO_ACTION)
        n = len(np.asarray(bars["close"]))
        block = np.empty((n, len(BAR_FIELDS)))
        for j, name in enumerate(BAR_FIELDS):
            block[:, j] = np.asarray(bars[name], dtype=np.float64) if name in bars else (
                _NO_ACTION.get(name, np.nan)
            )  # fmt: skip
        if self._pure:
            self.ready = bool(n) and fk.stream_block(
                self._buf, self._istate, self._fstate, block, self.adjust, self._plan,
                self._weights, self.row, self._mean, self._scale, self.window,
            )  # fmt: skip
            return self.ready
        for i in range(n):
            self.bar[:] = block[i]
            self.step()
        return self.ready

"""Causal features, defined once for training, backtest and live.

A feature is a function of the bars up to and including bar t. Each built-in kind is written
once, as a compiled kernel over the feature's trailing window
(:mod:`kerastrader.models.feature_kernels`), and that one kernel serves both paths:

- the full-history path, :meth:`FeatureSet.compute`, used for training and by the vectorised
  backtest pass: the kernel walked over every bar, one row per bar, NaN until enough history
  exists;
- the bar-by-bar path, :meth:`FeatureSet.stream`, used live and by Backtrader's ``next``: a
  fixed-size buffer of the last bars, one new bar pushed and the same kernel evaluated at it
  (5-14 us a bar for the nine default features with the Python call, measured on a busy
  machine by benchmarks/bench_indicator.py, against 165-190 us for recomputing each feature
  function on the trailing look-back).

Recursive indicators (EMA, RSI, ATR) remember every bar they have ever seen, so their value at t
depends on where the series starts: an RSI computed from 1995 differs from one warmed up on 200
bars of live backfill. We therefore define them over a fixed trailing window of
``memory x period`` bars (Wilder/EMA weights decay as (1 - 1/period)^k, so with the default
memory of 10 the truncated tail weighs under 0.1% for RSI(14)): TA-Lib's recursion on exactly
the bars t-M+1..t, whatever came before, which is a weighted sum of the window
(:func:`recursive_weights`). Both paths give the same numbers, and the tests hold every kernel
to TA-Lib (per trailing window for the recursive kinds, over the full history for the rest).

A window that holds a missing (NaN) bar gives NaN. Kinds registered with a plain function
(``_Kind(fn, ...)``, such as the look-ahead ``dpo_centred``) are still served: by the
function over the full history, and over the trailing look-back bar by bar.

Bars that carry ``dividend`` and ``split`` columns (or lines) are first turned into the causal
total-return series of :func:`kerastrader.feeds.actions.total_return_prices`, so an
ex-dividend day is not a down bar; every feature is a ratio of prices (or a volume z-score),
so the series' starting point cancels and both paths still agree. (The price levels ``sma_N``
and ``ema_N`` do depend on that starting point when the bars carry dividends.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from kerastrader.errors import ConfigError
from kerastrader.feeds.actions import ACTION_COLUMNS, total_return_prices
from kerastrader.models import feature_kernels as fk

if TYPE_CHECKING:
    from kerastrader.models.feature_stream import FeatureStream
    from kerastrader.models.scaler import FittedScaler

Bars = Mapping[str, np.ndarray]
COLUMNS = ("open", "high", "low", "close", "volume")


def recursive_weights(n: int, length: int, alpha: float) -> np.ndarray:
    """The weights, most recent input first, with which TA-Lib's recursive averages (Wilder's
    for RSI and ATR, the EMA) combine exactly ``length`` inputs: the first ``n`` seed the
    average with their mean, then each later one enters with weight ``alpha``."""
    steps = length - n
    recent = alpha * (1.0 - alpha) ** np.arange(steps)
    return np.concatenate([recent, np.full(n, (1.0 - alpha) ** steps / n)])


def _wilder(n: int, m: int) -> np.ndarray:
    return recursive_weights(n, m - 1, 1.0 / n)  # RSI, ATR: the window's m - 1 changes


def _ema_weights(n: int, m: int) -> np.ndarray:
    return recursive_weights(n, m, 2.0 / (n + 1))  # EMA: the window's m closes


def _dpo_shift(n: int) -> int:
    return n // 2 + 1  # pandas-ta's DPO displacement: 11 bars for n = 20


def _dpo_centred(b: Bars, n: int) -> np.ndarray:
    # LOOKS AHEAD: pandas-ta's default DPO (centered=True) shifts the causal one back by k bars,
    # so the value at t holds SMA(n) at t + k. Kept only to reproduce studies that used it
    # (examples/studies/a_nifty_lstm); the causal-feature property test leaves it out. Not a
    # kernel: no one-bar update can know later bars.
    close, k = b["close"], _dpo_shift(n)
    out = np.full(len(close), np.nan)
    if len(close) < n + k:
        return out
    sma = np.full(len(close), np.nan)
    sma[n - 1 :] = sliding_window_view(close, n).mean(axis=1)
    out[:-k] = (close[:-k] - sma[k:]) / close[:-k]
    return out


@dataclass(frozen=True)
class _Kind:
    """A feature kind. Built-in kinds have a kernel ``code`` (feature_kernels.KIND_CODES) and
    no ``fn``; a kind registered with a plain function ``fn(bars, period)`` (full history in,
    one value per bar out) is served by that function in both paths."""

    fn: Callable[[Bars, int], np.ndarray] | None
    columns: tuple[str, ...]
    recursive: bool
    min_period: int
    bars_needed: Callable[[int], int]  # bars for one valid value (non-recursive kinds)
    doc: str
    code: int | None = None
    weights: Callable[[int, int], np.ndarray] | None = None  # (period, m) -> recursive weights


def _k(kind: str, columns: tuple[str, ...], recursive: bool, min_period: int,
       bars_needed: Callable[[int], int], doc: str,
       weights: Callable[[int, int], np.ndarray] | None = None) -> _Kind:  # fmt: skip
    return _Kind(None, columns, recursive, min_period, bars_needed, doc,
                 fk.KIND_CODES[kind], weights)  # fmt: skip


_C, _HLC = ("close",), ("high", "low", "close")
KINDS: dict[str, _Kind] = {
    "logret": _k("logret", _C, False, 1, lambda n: n + 1, "log(Close[t] / Close[t-n])"),
    "rsi": _k("rsi", _C, True, 2, lambda n: n + 1, "TA-Lib RSI(n) / 50 - 1", _wilder),
    "bbp": _k("bbp", _C, False, 2, lambda n: n, "Bollinger %B, SMA(n) +/- 2 std"),
    "atr": _k("atr", _HLC, True, 1, lambda n: n + 1, "TA-Lib ATR(n) / Close", _wilder),
    "rvol": _k("rvol", _C, False, 2, lambda n: n + 1, "std of n one-bar log returns"),
    "sma_dist": _k("sma_dist", _C, False, 1, lambda n: n, "Close / SMA(n) - 1"),
    "ema_dist": _k("ema_dist", _C, True, 2, lambda n: n, "Close / EMA(n) - 1", _ema_weights),
    "volume_z": _k("volume_z", ("volume",), False, 2, lambda n: n, "volume z-score over n bars"),
    "pctret": _k("pctret", _C, False, 1, lambda n: n + 1, "Close[t] / Close[t-n] - 1"),
    "slope": _k("slope", _C, False, 1, lambda n: n + 1, "(C[t] - C[t-n]) / n / C[t]"),
    "mom": _k("mom", _C, False, 1, lambda n: n + 1, "(Close[t] / Close[t-n] - 1) / n"),
    "dpo": _k(
        "dpo",
        _C,
        False,
        2,
        lambda n: n + n // 2 + 1,
        "causal DPO: (Close[t-n//2-1] - SMA(n)[t]) / Close[t]",
    ),  # fmt: skip
    "dpo_centred": _Kind(
        _dpo_centred,
        _C,
        False,
        2,
        lambda n: n,
        "LOOKS AHEAD n//2+1 bars: pandas-ta's centred DPO, for reproducing studies only",
    ),  # fmt: skip
    "sma": _k("sma", _C, False, 1, lambda n: n, "SMA(n) of the close (a price level)"),
    "ema": _k(
        "ema", _C, True, 2, lambda n: n, "EMA(n) of the close (a price level)", _ema_weights
    ),  # fmt: skip
}

# Kinds whose value at t reads bars after t. They exist to reproduce published mistakes; a run
# using one is marked look-ahead by the study runner (kerastrader.studies).
LOOK_AHEAD_KINDS = frozenset({"dpo_centred"})

_NAME = re.compile(r"^(?P<kind>[a-z_]+?)_(?P<period>\d+)$")


@dataclass(frozen=True)
class Feature:
    """One configured feature, such as ``rsi_14``."""

    name: str
    kind: str
    period: int
    memory: int

    @cached_property
    def spec(self) -> _Kind:
        return KINDS[self.kind]

    @cached_property
    def lookback(self) -> int:
        """Bars from which one value is computed (the value at t uses bars t-lookback+1..t)."""
        if self.spec.recursive:
            return max(self.memory * self.period, self.spec.bars_needed(self.period))
        return self.spec.bars_needed(self.period)

    @property
    def compiled(self) -> bool:
        """True when a kernel computes the feature (every built-in kind but dpo_centred)."""
        return self.spec.fn is None

    def kernel_weights(self) -> np.ndarray:
        """The recursive kinds' weights over the window (empty for the others)."""
        if self.spec.weights is None:
            return np.empty(0)
        return np.asarray(self.spec.weights(self.period, self.lookback), dtype=np.float64)

    def compute(self, bars: Bars) -> np.ndarray:
        """Full-history path: one value per bar, NaN before ``lookback`` bars exist."""
        if self.compiled:
            return _Plan([self]).run(bars)[:, 0]
        n = len(next(iter(bars.values())))
        m, fn, cols = self.lookback, self.spec.fn, self.spec.columns
        if not self.spec.recursive:
            out = np.asarray(fn(bars, self.period), dtype=float)
            out[: min(n, m - 1)] = np.nan
            return out
        out = np.full(n, np.nan)
        for t in range(m - 1, n):
            out[t] = fn({k: bars[k][t - m + 1 : t + 1] for k in cols}, self.period)[-1]
        return out

    def compute_last(self, bars: Bars) -> float:
        """The value at the last bar, from the trailing ``lookback`` bars only."""
        m = self.lookback
        if len(bars[self.spec.columns[0]]) < m:
            return float("nan")
        recent = {k: np.asarray(bars[k][-m:], dtype=np.float64) for k in self.spec.columns}
        return float(self.compute(recent)[-1])


class _Plan:
    """The compiled features of a set as the kernels' plan: rows (code, period, m, weights
    offset) and the weights, concatenated."""

    def __init__(self, features: Sequence[Feature]) -> None:
        rows, weights, offset = [], [], 0
        for f in features:
            w = f.kernel_weights()[::-1]  # the kernels read the window oldest first
            rows.append((f.spec.code, f.period, f.lookback, offset))
            weights.append(w)
            offset += len(w)
        self.rows = np.array(rows, dtype=np.int64).reshape(len(rows), 4)
        self.weights = np.ascontiguousarray(np.concatenate([np.empty(0), *weights]))

    def __len__(self) -> int:
        return len(self.rows)

    def run(self, bars: Bars) -> np.ndarray:
        """The kernels walked over the full history of ``bars`` (adjusted OHLCV arrays)."""
        n = len(next(iter(bars.values())))
        cols = np.full((fk.N_RAW, n), np.nan)
        for i, c in enumerate(COLUMNS):
            if c in bars:
                cols[i] = bars[c]
        out = np.empty((n, len(self)))
        if n:
            fk.run_history(cols, self.rows, self.weights, out)
        return out


def parse_feature(name: str, memory: int) -> Feature:
    """``rsi_14`` -> Feature(kind="rsi", period=14); unknown names are config errors."""
    match = _NAME.match(name)
    if not match or match["kind"] not in KINDS:
        known = ", ".join(f"{k}_N ({v.doc})" for k, v in KINDS.items())
        raise ConfigError(f"features.names: unknown feature {name!r}; known: {known}")
    kind, period = match["kind"], int(match["period"])
    if period < KINDS[kind].min_period:
        raise ConfigError(f"features.names: {name!r} needs a period >= {KINDS[kind].min_period}")
    return Feature(name=name, kind=kind, period=period, memory=memory)


def as_arrays(bars: pd.DataFrame | Bars, columns: Sequence[str] = COLUMNS) -> dict[str, np.ndarray]:
    """OHLCV columns as contiguous float64 arrays, total-return adjusted when the bars carry
    dividends or splits."""
    actions = [c for c in ACTION_COLUMNS if c in bars]
    if not actions:
        return {c: np.ascontiguousarray(bars[c], dtype=np.float64) for c in columns}
    wanted = {*columns, "close", *actions}
    raw = {c: np.asarray(bars[c], dtype=np.float64) for c in wanted}
    adjusted = total_return_prices(raw)
    return {c: np.ascontiguousarray(adjusted[c], dtype=np.float64) for c in columns}


class FeatureSet:
    """The configured features, in order: the model's input columns."""

    def __init__(self, names: Sequence[str], memory: int = 10) -> None:
        if not names:
            raise ConfigError("features.names must list at least one feature")
        if len(set(names)) != len(names):
            raise ConfigError("features.names lists a feature twice")
        if memory < 1:
            raise ConfigError("features.memory must be at least 1")
        self.names = list(names)
        self.memory = int(memory)
        self.features = [parse_feature(n, self.memory) for n in self.names]
        self.lookback = max(f.lookback for f in self.features)
        used = {c for f in self.features for c in f.spec.columns}
        self.columns = tuple(c for c in COLUMNS if c in used)  # what the features read
        # What a feed is asked for: the close and corporate actions too, for total returns.
        self.inputs = tuple(dict.fromkeys((*self.columns, "close", *ACTION_COLUMNS)))

    def __len__(self) -> int:
        return len(self.features)

    @cached_property
    def compiled(self) -> np.ndarray:
        """Indices of the features a kernel computes (the others are plain functions)."""
        return np.array([i for i, f in enumerate(self.features) if f.compiled], dtype=np.intp)

    @cached_property
    def plan(self) -> _Plan:
        return _Plan([self.features[i] for i in self.compiled])

    def compute(self, bars: pd.DataFrame | Bars) -> np.ndarray:
        """Full-history path: an (n_bars, n_features) matrix, NaN rows during the look-back."""
        arrays = as_arrays(bars, self.columns)
        n = len(next(iter(arrays.values())))
        out = np.empty((n, len(self)))
        if len(self.compiled):
            out[:, self.compiled] = self.plan.run(arrays)
        for i, f in enumerate(self.features):
            if not f.compiled:
                out[:, i] = f.compute(arrays)
        out[: self.lookback - 1] = np.nan
        return out

    def compute_frame(self, bars: pd.DataFrame) -> pd.DataFrame:
        """:meth:`compute` with the bars' index and the feature names as columns."""
        return pd.DataFrame(self.compute(bars), index=bars.index, columns=self.names)

    def compute_last(self, bars: Bars) -> np.ndarray:
        """The feature row of the last bar, from the trailing look-back only (the same kernels
        run over the last ``lookback`` bars)."""
        recent = {c: np.asarray(bars[c])[-self.lookback :] for c in self.inputs if c in bars}
        arrays = as_arrays(recent, self.columns)
        if len(next(iter(arrays.values()))) < self.lookback:
            return np.full(len(self.features), np.nan)
        return self.compute(arrays)[-1]

    def stream(self, scaler: FittedScaler | None = None, window: int = 1) -> FeatureStream:
        """Bar-by-bar path: a :class:`~kerastrader.models.feature_stream.FeatureStream` that
        takes one bar at a time and keeps the last ``window`` scaled rows."""
        from kerastrader.models.feature_stream import FeatureStream

        return FeatureStream(self, scaler, window)

    def to_dict(self) -> dict:
        return {"names": self.names, "memory": self.memory, "lookback": self.lookback}

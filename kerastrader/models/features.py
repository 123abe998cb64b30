"""Causal features, defined once for training, backtest and live.

A feature is a pure function of the bars up to and including bar t. Each is written once, as a
function of OHLCV arrays, and served by two paths that are tested to agree:

- the full-history path, :meth:`FeatureSet.compute`, used for training and by the vectorised
  backtest pass: one row per bar, NaN until enough history exists;
- the bar-by-bar path, :meth:`FeatureSet.compute_last`, used live and by Backtrader's ``next``:
  the same functions applied to the trailing :attr:`FeatureSet.lookback` bars, last row only.

Recursive indicators (EMA, RSI, ATR) remember every bar they have ever seen, so their value at t
depends on where the series starts: an RSI computed from 1995 differs from one warmed up on 200
bars of live backfill. We therefore define them over a fixed trailing window of
``memory x period`` bars (Wilder/EMA weights decay as (1 - 1/period)^k, so with the default
memory of 10 the truncated tail weighs under 0.1% for RSI(14)). A value at t then depends on
exactly the bars t-M+1..t, whatever came before, and both paths give the same numbers.

Bars that carry ``dividend`` and ``split`` columns (or lines) are first turned into the causal
total-return series of :func:`kerastrader.feeds.actions.total_return_prices`, so an
ex-dividend day is not a down bar; every feature is a ratio of prices (or a volume z-score),
so the series' starting point cancels and both paths still agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import talib

from kerastrader.errors import ConfigError
from kerastrader.feeds.actions import ACTION_COLUMNS, total_return_prices

Bars = Mapping[str, np.ndarray]


class _TaLib:
    """TA-Lib's functions without the pandas/polars wrapper ``talib`` puts around each.

    The wrapper inspects every argument for Series types, about 3 us a call: a third of the
    bar-by-bar feature cost. We pass float64 arrays only, so the wrapped C function is used.
    """

    def __getattr__(self, name: str):
        fn = getattr(talib, name)
        fn = getattr(fn, "__wrapped__", fn)
        setattr(self, name, fn)
        return fn


ta = _TaLib()
COLUMNS = ("open", "high", "low", "close", "volume")


def _logret(b: Bars, n: int) -> np.ndarray:
    close = b["close"]
    out = np.full(len(close), np.nan)
    out[n:] = np.log(close[n:] / close[:-n])
    return out


def _rsi(b: Bars, n: int) -> np.ndarray:
    # Scaled to [-1, 1] so that the network sees values of the same order as the others.
    return ta.RSI(b["close"], timeperiod=n) / 50.0 - 1.0


def _bbp(b: Bars, n: int) -> np.ndarray:
    upper, _, lower = ta.BBANDS(b["close"], timeperiod=n, nbdevup=2.0, nbdevdn=2.0)
    width = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = (b["close"] - lower) / width
    return np.where(width > 0, pct, 0.5)


def _atr(b: Bars, n: int) -> np.ndarray:
    # Normalised by the close: a volatility, comparable across price levels.
    return ta.ATR(b["high"], b["low"], b["close"], timeperiod=n) / b["close"]


def _rvol(b: Bars, n: int) -> np.ndarray:
    r = _logret(b, 1)
    return ta.STDDEV(r, timeperiod=n, nbdev=1.0) * np.sqrt(n / (n - 1.0))


def _sma_dist(b: Bars, n: int) -> np.ndarray:
    return b["close"] / ta.SMA(b["close"], timeperiod=n) - 1.0


def _ema_dist(b: Bars, n: int) -> np.ndarray:
    return b["close"] / ta.EMA(b["close"], timeperiod=n) - 1.0


def _pctret(b: Bars, n: int) -> np.ndarray:
    # pandas-ta's PCTRET_n: the simple return over n bars.
    close = b["close"]
    out = np.full(len(close), np.nan)
    out[n:] = close[n:] / close[:-n] - 1.0
    return out


def _slope(b: Bars, n: int) -> np.ndarray:
    # pandas-ta's SLOPE_n (price points per bar), relative to the close so that it is
    # comparable across price levels: (Close[t] - Close[t-n]) / n / Close[t].
    close = b["close"]
    out = np.full(len(close), np.nan)
    out[n:] = (close[n:] - close[:-n]) / n / close[n:]
    return out


def _dpo_shift(n: int) -> int:
    return n // 2 + 1  # pandas-ta's DPO displacement: 11 bars for n = 20


def _dpo(b: Bars, n: int) -> np.ndarray:
    # Detrended price oscillator, causal (pandas-ta's centered=False): the close k bars ago
    # against today's SMA(n), relative to the close.
    close, k = b["close"], _dpo_shift(n)
    sma = ta.SMA(close, timeperiod=n)
    out = np.full(len(close), np.nan)
    out[k:] = (close[:-k] - sma[k:]) / close[k:]
    return out


def _dpo_centred(b: Bars, n: int) -> np.ndarray:
    # LOOKS AHEAD: pandas-ta's default DPO (centered=True) shifts the causal one back by k bars,
    # so the value at t holds SMA(n) at t + k. Kept only to reproduce studies that used it
    # (examples/studies/a_nifty_lstm); the causal-feature property test leaves it out.
    close, k = b["close"], _dpo_shift(n)
    sma = ta.SMA(close, timeperiod=n)
    out = np.full(len(close), np.nan)
    out[:-k] = (close[:-k] - sma[k:]) / close[:-k]
    return out


def _mom(b: Bars, n: int) -> np.ndarray:
    # Momentum relative to the close: Close[t] / Close[t-n] - 1 over n bars, in percent of n.
    close = b["close"]
    out = np.full(len(close), np.nan)
    out[n:] = (close[n:] / close[:-n] - 1.0) / n
    return out


def _sma(b: Bars, n: int) -> np.ndarray:
    # A price level, not a ratio: what tutorials feed their networks (study C). Levels trend,
    # so a scaler fitted on training rows sees values the test period leaves behind.
    return ta.SMA(b["close"], timeperiod=n)


def _ema(b: Bars, n: int) -> np.ndarray:
    return ta.EMA(b["close"], timeperiod=n)


def _ema_fixed(b: Bars, n: int, m: int) -> np.ndarray:
    return _trailing(b["close"], _recursive_weights(n, m, 2.0 / (n + 1)))


def _volume_z(b: Bars, n: int) -> np.ndarray:
    v = b["volume"]
    std = ta.STDDEV(v, timeperiod=n, nbdev=1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (v - ta.SMA(v, timeperiod=n)) / std
    # A constant volume (an index with no volume data) carries no information: 0, not NaN.
    return np.where(std > 0, z, np.where(np.isnan(std), np.nan, 0.0))


def _recursive_weights(n: int, length: int, alpha: float) -> np.ndarray:
    """The weights, most recent input first, with which TA-Lib's recursive averages (Wilder's
    for RSI and ATR, the EMA) combine exactly ``length`` inputs: the first ``n`` seed the
    average with their mean, then each later one enters with weight ``alpha``."""
    steps = length - n
    recent = alpha * (1.0 - alpha) ** np.arange(steps)
    return np.concatenate([recent, np.full(n, (1.0 - alpha) ** steps / n)])


def _trailing(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights . (u[t], u[t-1], ...)`` for every t with a full trailing span, in one pass."""
    return np.convolve(u, weights, mode="valid")


# The fixed-memory definition (a TA-Lib call on the trailing ``m`` bars, last value) stated as
# the linear filter it is, so the full-history path costs one convolution instead of one TA-Lib
# call per bar. Each takes finite bars, the period and m, and gives the values for bars
# m-1..n-1; tests hold them to the per-bar TA-Lib definition.
def _rsi_fixed(b: Bars, n: int, m: int) -> np.ndarray:
    change = np.diff(b["close"])
    w = _recursive_weights(n, m - 1, 1.0 / n)
    gain = _trailing(np.where(change < 0, 0.0, change), w)
    loss = _trailing(np.where(change < 0, -change, 0.0), w)
    total = gain + loss
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 * (gain / total)
    rsi = np.where(total == 0.0, 0.0, rsi)  # TA-Lib's RSI of a flat window is 0
    return rsi / 50.0 - 1.0


def _atr_fixed(b: Bars, n: int, m: int) -> np.ndarray:
    high, low, close = b["high"], b["low"], b["close"]
    true_range = np.maximum.reduce(
        [high[1:] - low[1:], np.abs(close[:-1] - high[1:]), np.abs(close[:-1] - low[1:])]
    )
    return _trailing(true_range, _recursive_weights(n, m - 1, 1.0 / n)) / close[m - 1 :]


def _ema_dist_fixed(b: Bars, n: int, m: int) -> np.ndarray:
    close = b["close"]
    return close[m - 1 :] / _trailing(close, _recursive_weights(n, m, 2.0 / (n + 1))) - 1.0


_FIXED_MEMORY: dict[str, Callable[[Bars, int, int], np.ndarray]] = {
    "rsi": _rsi_fixed,
    "atr": _atr_fixed,
    "ema_dist": _ema_dist_fixed,
    "ema": _ema_fixed,
}


@dataclass(frozen=True)
class _Kind:
    fn: Callable[[Bars, int], np.ndarray]
    columns: tuple[str, ...]
    recursive: bool
    min_period: int
    bars_needed: Callable[[int], int]  # bars for one valid value (non-recursive kinds)
    doc: str


KINDS: dict[str, _Kind] = {
    "logret": _Kind(_logret, ("close",), False, 1, lambda n: n + 1, "log(Close[t] / Close[t-n])"),
    "rsi": _Kind(_rsi, ("close",), True, 2, lambda n: n + 1, "TA-Lib RSI(n) / 50 - 1"),
    "bbp": _Kind(_bbp, ("close",), False, 2, lambda n: n, "Bollinger %B, SMA(n) +/- 2 std"),
    "atr": _Kind(_atr, ("high", "low", "close"), True, 1, lambda n: n + 1, "TA-Lib ATR(n) / Close"),
    "rvol": _Kind(_rvol, ("close",), False, 2, lambda n: n + 1, "std of n one-bar log returns"),
    "sma_dist": _Kind(_sma_dist, ("close",), False, 1, lambda n: n, "Close / SMA(n) - 1"),
    "ema_dist": _Kind(_ema_dist, ("close",), True, 2, lambda n: n, "Close / EMA(n) - 1"),
    "volume_z": _Kind(_volume_z, ("volume",), False, 2, lambda n: n, "volume z-score over n bars"),
    "pctret": _Kind(_pctret, ("close",), False, 1, lambda n: n + 1, "Close[t] / Close[t-n] - 1"),
    "slope": _Kind(_slope, ("close",), False, 1, lambda n: n + 1, "(C[t] - C[t-n]) / n / C[t]"),
    "mom": _Kind(_mom, ("close",), False, 1, lambda n: n + 1, "(Close[t] / Close[t-n] - 1) / n"),
    "dpo": _Kind(
        _dpo,
        ("close",),
        False,
        2,
        lambda n: n + n // 2 + 1,
        "causal DPO: (Close[t-n//2-1] - SMA(n)[t]) / Close[t]",
    ),  # fmt: skip
    "dpo_centred": _Kind(
        _dpo_centred,
        ("close",),
        False,
        2,
        lambda n: n,
        "LOOKS AHEAD n//2+1 bars: pandas-ta's centred DPO, for reproducing studies only",
    ),  # fmt: skip
    "sma": _Kind(_sma, ("close",), False, 1, lambda n: n, "SMA(n) of the close (a price level)"),
    "ema": _Kind(_ema, ("close",), True, 2, lambda n: n, "EMA(n) of the close (a price level)"),
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

    def compute(self, bars: Bars) -> np.ndarray:
        """Full-history path: one value per bar, NaN before ``lookback`` bars exist."""
        n = len(next(iter(bars.values())))
        if not self.spec.recursive:
            out = np.asarray(self.spec.fn(bars, self.period), dtype=float)
            out[: min(n, self.lookback - 1)] = np.nan
            return out
        out = np.full(n, np.nan)
        m, fn, period = self.lookback, self.spec.fn, self.period
        cols = self.spec.columns
        fixed = _FIXED_MEMORY.get(self.kind)
        if fixed is not None and n >= m and all(np.isfinite(bars[k]).all() for k in cols):
            out[m - 1 :] = fixed(bars, period, m)
            return out
        # The definition itself (and the path for bars with holes, where TA-Lib's handling
        # of NaN decides): TA-Lib on each trailing window.
        for t in range(m - 1, n):
            out[t] = fn({k: bars[k][t - m + 1 : t + 1] for k in cols}, period)[-1]
        return out

    def compute_last(self, bars: Bars) -> float:
        """Bar-by-bar path: the value at the last bar, from the trailing ``lookback`` bars."""
        m = self.lookback
        if len(bars[self.spec.columns[0]]) < m:
            return float("nan")
        return float(self.spec.fn({k: bars[k][-m:] for k in self.spec.columns}, self.period)[-1])


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
    """OHLCV columns as contiguous float64 arrays (TA-Lib requires float64), total-return
    adjusted when the bars carry dividends or splits."""
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

    def compute(self, bars: pd.DataFrame | Bars) -> np.ndarray:
        """Full-history path: an (n_bars, n_features) matrix, NaN rows during the look-back."""
        arrays = as_arrays(bars, self.columns)
        out = np.column_stack([f.compute(arrays) for f in self.features])
        out[: self.lookback - 1] = np.nan
        return out

    def compute_frame(self, bars: pd.DataFrame) -> pd.DataFrame:
        """:meth:`compute` with the bars' index and the feature names as columns."""
        return pd.DataFrame(self.compute(bars), index=bars.index, columns=self.names)

    def compute_last(self, bars: Bars) -> np.ndarray:
        """Bar-by-bar path: the feature row of the last bar, from the trailing look-back."""
        recent = {c: np.asarray(bars[c])[-self.lookback :] for c in self.inputs if c in bars}
        arrays = as_arrays(recent, self.columns)
        if len(next(iter(arrays.values()))) < self.lookback:
            return np.full(len(self.features), np.nan)
        return np.array([f.compute_last(arrays) for f in self.features])

    def to_dict(self) -> dict:
        return {"names": self.names, "memory": self.memory, "lookback": self.lookback}

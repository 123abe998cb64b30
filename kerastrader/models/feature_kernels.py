"""The built-in features as compiled kernels over a fixed trailing window: one definition for
the full-history pass and the one-bar update.

Every value at bar t is a function of the last ``m`` bars only (the feature's fixed memory,
see :mod:`kerastrader.models.features`), so the same kernel serves both passes:

- :func:`run_history` walks the whole history once (training, the vectorised backtest pass);
- :func:`stream_push` appends one bar to a buffer that keeps the last bars and evaluates the
  same kernel at the new bar (Backtrader's ``next``, live trading).

Both call :func:`_bar_row`, which derives the bar's one-bar inputs (gain, loss, true range,
log return) and evaluates every feature on its window. Nothing is carried from bar to bar but
the window itself, so a live session warmed up on ``m`` bars gives the backtest's numbers, and
running sums cannot drift over a long session.

The series buffer ``buf`` has one row per series (the ``OPEN`` .. ``LOGRET1`` constants) and
one column per bar. A feature is a row of the plan (``code, period, m, weights offset``);
recursive kinds (RSI, ATR, EMA) are TA-Lib's recursions written out as the weights they give
the window's inputs (:func:`kerastrader.models.features.recursive_weights`), stored oldest
input first. TA-Lib itself is
the reference the tests hold these kernels to.

Compiled with numba (``cache=True``: the first process compiles and writes the machine code
next to this file; later processes load it). ``error_model="numpy"``: a division by zero gives
inf or NaN as numpy does, instead of raising.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# Rows of the series buffer: the (total-return adjusted) bar, then what bar t and t-1 give.
OPEN, HIGH, LOW, CLOSE, VOLUME, GAIN, LOSS, TRUE_RANGE, LOGRET1 = range(9)
N_SERIES = 9
N_RAW = 5  # open, high, low, close, volume
COLUMNS_ROW = {"open": OPEN, "high": HIGH, "low": LOW, "close": CLOSE, "volume": VOLUME}

# Kind codes of the plan's first column.
LOGRET, RSI, BBP, ATR, RVOL, SMA_DIST, EMA_DIST, VOLUME_Z = range(8)
PCTRET, SLOPE, MOM, DPO, SMA, EMA = range(8, 14)
KIND_CODES = {
    "logret": LOGRET, "rsi": RSI, "bbp": BBP, "atr": ATR, "rvol": RVOL, "sma_dist": SMA_DIST,
    "ema_dist": EMA_DIST, "volume_z": VOLUME_Z, "pctret": PCTRET, "slope": SLOPE, "mom": MOM,
    "dpo": DPO, "sma": SMA, "ema": EMA,
}  # fmt: skip

# A standard deviation within two machine epsilons of the mean is rounding, not spread: 0.
DEAD_ZONE = 2.0 * np.finfo(np.float64).eps

# Stream state: istate = [size (columns of buf in use), count (bars since reset), keep (bars
# kept when the buffer is compacted), valid run (consecutive finite rows, for the window),
# lookback (of the whole set: rows before it are NaN, as in the full-history path)];
# fstate = [previous raw close, growth product, first close, splits so far] (total returns).
SIZE, COUNT, KEEP, RUN, LOOKBACK = range(5)
PREV_CLOSE, GROWTH, FIRST_CLOSE, SPLITS = range(4)

_jit = nb.njit(cache=True, error_model="numpy")
# The window sums may be reassociated (summed in SIMD lanes): the same compiled code serves
# both passes, so they still agree exactly; against a sequential sum they differ by rounding.
_sum_jit = nb.njit(cache=True, error_model="numpy", fastmath={"reassoc"})


@_jit
def _derive(buf, p, has_prev):
    """Gain, loss, true range and log return of the bar at column ``p`` (needs bar p-1)."""
    if not has_prev:
        for r in range(GAIN, N_SERIES):
            buf[r, p] = np.nan
        return
    c0 = buf[CLOSE, p - 1]
    c = buf[CLOSE, p]
    d = c - c0
    # TA-Lib's RSI: a change < 0 is a loss, anything else a gain (a NaN change: NaN gain).
    if d < 0.0:
        buf[GAIN, p] = 0.0
        buf[LOSS, p] = -d
    else:
        buf[GAIN, p] = d
        buf[LOSS, p] = 0.0
    h = buf[HIGH, p]
    lo = buf[LOW, p]
    tr = h - lo
    a = abs(c0 - h)
    b = abs(c0 - lo)
    if a > tr:
        tr = a
    if b > tr:
        tr = b
    if a != a or b != b:
        tr = np.nan
    buf[TRUE_RANGE, p] = tr
    buf[LOGRET1, p] = math.log(c / c0)


@_sum_jit
def _mean(x, lo, hi):
    s = 0.0
    for i in range(lo, hi):
        s += x[i]
    return s / (hi - lo)


@_sum_jit
def _std(x, lo, hi, mean):
    """Population standard deviation, two-pass (as TA-Lib 0.8 gives it: accurate for a small
    spread around a large mean, where E[x^2] - mean^2 cancels); 0 when every deviation is
    within rounding of the mean (a constant window whose mean did not come out exact)."""
    s2 = 0.0
    for i in range(lo, hi):
        d = x[i] - mean
        s2 += d * d
    var = s2 / (hi - lo)
    tiny = DEAD_ZONE * mean
    if var <= tiny * tiny:
        return 0.0
    return math.sqrt(var)


@_sum_jit
def _weighted(x, w, e, length):
    """sum_j w[j] * x[e - length + j] for j < length: the window's last ``length`` inputs,
    oldest first, with the weights stored oldest first (contiguous, so it vectorises)."""
    s = 0.0
    lo = e - length
    for j in range(length):
        s += w[j] * x[lo + j]
    return s


@_jit
def feature_value(code, n, m, w, buf, e):
    """The value of one feature at the bar in column ``e - 1``, from columns e-m .. e-1."""
    t = e - 1
    c = buf[CLOSE]
    if code == LOGRET:
        return math.log(c[t] / c[t - n])
    if code == PCTRET:
        return c[t] / c[t - n] - 1.0
    if code == SLOPE:
        return (c[t] - c[t - n]) / n / c[t]
    if code == MOM:
        return (c[t] / c[t - n] - 1.0) / n
    if code == SMA:
        return _mean(c, e - n, e)
    if code == SMA_DIST:
        return c[t] / _mean(c, e - n, e) - 1.0
    if code == DPO:
        return (c[t - (n // 2 + 1)] - _mean(c, e - n, e)) / c[t]
    if code == BBP:  # Bollinger %B: SMA(n) +/- 2 standard deviations
        mid = _mean(c, e - n, e)
        band = _std(c, e - n, e, mid) * 2.0
        lower = mid - band
        width = (mid + band) - lower
        if width > 0.0:
            return (c[t] - lower) / width
        return 0.5 if width == 0.0 else np.nan
    if code == RVOL:  # std of n one-bar log returns, sample (n - 1) normalisation
        r = buf[LOGRET1]
        mean = _mean(r, e - n, e)
        return _std(r, e - n, e, mean) * math.sqrt(n / (n - 1.0))
    if code == VOLUME_Z:
        v = buf[VOLUME]
        mean = _mean(v, e - n, e)
        sd = _std(v, e - n, e, mean)
        if sd > 0.0:
            return (v[t] - mean) / sd
        return 0.0 if sd == 0.0 else np.nan  # a constant volume carries no information
    if code == RSI:  # Wilder's averages of the m - 1 changes, scaled to [-1, 1]
        gain = _weighted(buf[GAIN], w, e, m - 1)
        loss = _weighted(buf[LOSS], w, e, m - 1)
        total = gain + loss
        rsi = 0.0 if total == 0.0 else 100.0 * (gain / total)  # TA-Lib: a flat window is 0
        return rsi / 50.0 - 1.0
    if code == ATR:
        return _weighted(buf[TRUE_RANGE], w, e, m - 1) / c[t]
    if code == EMA_DIST:
        return c[t] / _weighted(c, w, e, m) - 1.0
    if code == EMA:
        return _weighted(c, w, e, m)
    return np.nan


@_jit
def _bar_row(buf, p, count, plan, weights, row):
    """Derive the inputs of the bar in column ``p`` and every feature's value there; a feature
    whose ``m`` bars are not all there yet (``count`` bars so far) is NaN."""
    _derive(buf, p, count > 1)
    for f in range(plan.shape[0]):
        m = plan[f, 2]
        if count < m:
            row[f] = np.nan
        else:
            off = plan[f, 3]
            row[f] = feature_value(plan[f, 0], plan[f, 1], m, weights[off:], buf, p + 1)


@_jit
def run_history(cols, plan, weights, out):
    """Full-history pass: ``cols`` (5, n) adjusted OHLCV, ``out`` (n, features)."""
    n = cols.shape[1]
    buf = np.empty((N_SERIES, n))
    buf[:N_RAW] = cols
    for p in range(n):
        _bar_row(buf, p, p + 1, plan, weights, out[p])


@_jit
def stream_reset(istate, fstate):
    istate[SIZE] = 0
    istate[COUNT] = 0
    istate[RUN] = 0
    fstate[:] = np.nan


@_jit
def stream_push(buf, istate, fstate, bar, adjust, plan, weights, row):
    """One-bar update: append ``bar`` (open, high, low, close, volume, dividend, split; raw)
    to the buffer, total-return adjusted when ``adjust``, and evaluate every feature at it.

    The buffer keeps the last ``istate[KEEP]`` bars (the feature set's look-back): when it is
    full, those are moved to its front, once every ``capacity - keep`` bars.
    """
    size = istate[SIZE]
    keep = istate[KEEP]
    if size == buf.shape[1]:
        buf[:, :keep] = buf[:, size - keep : size]
        size = keep
    factor = 1.0
    volume_div = 1.0
    if adjust:
        # kerastrader.feeds.actions.total_return_prices, one bar at a time: A[t] = A[t-1] *
        # Close[t] / (Close[t-1] / split[t] - dividend[t]), relative to the first bar.
        close = bar[3]
        if istate[COUNT] == 0:
            fstate[GROWTH] = 1.0
            fstate[FIRST_CLOSE] = close
            fstate[SPLITS] = 1.0
        else:
            fstate[GROWTH] *= close / (fstate[PREV_CLOSE] / bar[6] - bar[5])
            fstate[SPLITS] *= bar[6]
        fstate[PREV_CLOSE] = close
        factor = fstate[GROWTH] * fstate[FIRST_CLOSE] / close
        volume_div = fstate[SPLITS]
    for r in range(4):
        buf[r, size] = bar[r] * factor if adjust else bar[r]
    buf[VOLUME, size] = bar[4] / volume_div if adjust else bar[4]
    istate[COUNT] += 1
    _bar_row(buf, size, istate[COUNT], plan, weights, row)
    if istate[COUNT] < istate[LOOKBACK]:
        row[:] = np.nan
    istate[SIZE] = size + 1


@_jit
def window_append(row, mean, scale, window, istate):
    """Scale the feature row, ``(row - mean) / scale`` (FittedScaler.transform), as the last
    row of the float32 model window (the older rows move up one); True when no row of the
    window has a NaN."""
    w = window.shape[0]
    for i in range(w - 1):
        window[i, :] = window[i + 1, :]
    finite = True
    for f in range(row.shape[0]):
        x = (row[f] - mean[f]) / scale[f]
        window[w - 1, f] = x
        if x != x:
            finite = False
    istate[RUN] = istate[RUN] + 1 if finite else 0
    return istate[RUN] >= w


@_jit
def stream_step(buf, istate, fstate, bar, adjust, plan, weights, row, mean, scale, window):
    """:func:`stream_push` then :func:`window_append`: a bar's whole per-bar work in one call."""
    stream_push(buf, istate, fstate, bar, adjust, plan, weights, row)
    return window_append(row, mean, scale, window, istate)


@_jit
def stream_block(buf, istate, fstate, bars, adjust, plan, weights, row, mean, scale, window):
    """:func:`stream_step` for each bar of ``bars`` (k, 7) in order (seeding a stream)."""
    ok = False
    for i in range(bars.shape[0]):
        ok = stream_step(buf, istate, fstate, bars[i], adjust, plan, weights, row, mean, scale,
                         window)  # fmt: skip
    return ok

"""The ``correlation`` image: a universe's rolling correlation heatmap, drawn for one member.

At bar t of instrument i the image has two N x N channels for a universe of N instruments
(in the order the model was trained with):

- channel 0: the Pearson correlations of the N instruments' log close-to-close returns over
  the window, i.e. the W - 1 returns between the window's W closes (t-W+1 .. t), total
  returns when the bars carry dividends and splits (the causal total-return close of
  :func:`kerastrader.feeds.actions.total_return_prices`, whose ratios inside a window do not
  depend on where the series starts, so a recent slice gives the full history's); 1 on the
  diagonal; 0 for a pair where either series is constant or has a missing close in the window
  (an instrument that had not started trading, or a gap in its data);
- channel 1: the member marker, 1 on row i and column i, 0 elsewhere. The heatmap is the same
  for every instrument at one time; the marker says whose prediction is asked for, so one
  shared model serves the whole book.

Peers are read *as of* the member's bars: each instrument's close at a row of instrument i is
its latest close at or before that row's time (:func:`aligned_closes`). That is the one
alignment rule, used by training (from the universe's frames), the vectorised backtest pass
(from the feeds' whole arrays) and the bar-by-bar and live pass (from the feeds' recent bars),
so the image at t reads no bar of any instrument after t. A peer that did not trade on one of
i's days repeats its last close: a zero return for that step, as a trader looking at the
screen would have seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kerastrader.feeds.actions import ACTION_COLUMNS, total_return_close, total_return_prices

CHANNELS = 2  # correlations, member marker
TINY = 1e-12  # a return series whose deviations' norm is below this is constant


@dataclass(frozen=True)
class Peers:
    """The universe's closes at every row of one member: ``closes`` (rows, N), NaN where a
    peer had no close yet; ``member`` the member's column."""

    closes: np.ndarray
    member: int


def aligned_closes(times: np.ndarray, peers: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(len(times), N): for each (peer times, peer closes), the peer's latest close at or
    before each of ``times`` (all in one monotonic unit), NaN before its first bar."""
    times = np.asarray(times)
    out = np.full((len(times), len(peers)), np.nan)
    for j, (when, close) in enumerate(peers):
        idx = np.searchsorted(np.asarray(when), times, side="right") - 1
        ok = idx >= 0
        out[ok, j] = np.asarray(close, dtype=np.float64)[idx[ok]]
    return out


def render_correlation(closes: np.ndarray, member: int) -> np.ndarray:
    """(n, W, N) windows of the universe's closes -> (n, N, N, 2) float32 images (see the
    module's docstring)."""
    closes = np.asarray(closes, dtype=np.float64)
    n, _, k = closes.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(closes[:, 1:] / closes[:, :-1])  # (n, W-1, N)
    valid = np.isfinite(r).all(axis=1)  # (n, N): every return of the window known
    r = np.where(valid[:, None, :], r, 0.0)
    d = r - r.mean(axis=1, keepdims=True)
    cov = np.einsum("nti,ntj->nij", d, d)
    norm = np.sqrt(np.einsum("nti,nti->ni", d, d))  # (n, N)
    ok = valid & (norm > TINY)
    both = ok[:, :, None] & ok[:, None, :]
    denom = norm[:, :, None] * norm[:, None, :]
    corr = np.where(both, cov / np.where(both, denom, 1.0), 0.0)
    corr = np.clip(corr, -1.0, 1.0)
    diag = np.arange(k)
    corr[:, diag, diag] = 1.0
    out = np.zeros((n, k, k, CHANNELS), dtype=np.float32)
    out[..., 0] = corr
    out[:, member, :, 1] = 1.0
    out[:, :, member, 1] = 1.0
    return out


def frame_peers(universe: Mapping[str, pd.DataFrame], symbols: Sequence[str]) -> dict[str, Peers]:
    """Every member's :class:`Peers` from the universe's bar frames (training's side)."""
    missing = [s for s in symbols if s not in universe]
    if missing:
        raise KeyError(f"the correlation image's universe lacks {', '.join(missing)}")
    cols = [(_ns(universe[s].index), total_return_close(universe[s])) for s in symbols]
    return {
        sym: Peers(aligned_closes(_ns(universe[sym].index), cols), list(symbols).index(sym))
        for sym in symbols
    }


def _ns(index: pd.Index) -> np.ndarray:
    return pd.DatetimeIndex(index).asi8


class FeedUniverse:
    """The universe's Backtrader feeds, found by name, for both backtest passes and live.

    ``history`` aligns peers over a feed's whole loaded history (the vectorised pass, which
    runs after every feed is loaded); ``recent`` over its last ``size`` bars with each peer's
    bars up to the current one only (the bar-by-bar pass and paper sessions)."""

    def __init__(self, datas: Sequence, symbols: Sequence[str]) -> None:
        by_name = {getattr(d, "_name", ""): d for d in datas}
        missing = [s for s in symbols if s not in by_name]
        if missing:
            raise ValueError(
                f"the model's correlation image reads {', '.join(symbols)}: no feed is named "
                f"{', '.join(missing)} (the feeds are {', '.join(map(str, by_name))})"
            )
        self.symbols = tuple(symbols)
        self.datas = [by_name[s] for s in symbols]
        self._member = {id(d): i for i, d in enumerate(self.datas)}
        self._lines = [
            ("close", *(c for c in ACTION_COLUMNS if c in d.lines.getlinealiases()))
            for d in self.datas
        ]
        # Each member of a bar asks for the same peers' recent bars: read them once a bar
        # (keyed by the peer's bar count and current bar, so a bar updated in place is re-read)
        self._recent: list[tuple | None] = [None] * len(self.datas)
        # The vectorised pass asks once per member and fold: each peer's whole history once
        self._history: list[tuple | None] = [None] * len(self.datas)

    def member(self, data) -> int:
        try:
            return self._member[id(data)]
        except KeyError:
            raise ValueError(
                f"feed {getattr(data, '_name', '?')!r} is not in the model's universe "
                f"({', '.join(self.symbols)})"
            ) from None

    def history(self, data, lo: int, hi: int) -> Peers:
        """Peers at rows [lo, hi) of ``data``'s arrays."""
        times = np.asarray(data.datetime.array[lo:hi], dtype=np.float64)
        cols = []
        for j, (peer, lines) in enumerate(zip(self.datas, self._lines, strict=True)):
            n, got = len(peer.datetime.array), self._history[j]
            if got is None or got[0] != n:
                when = np.asarray(peer.datetime.array[:n], dtype=np.float64)
                got = self._history[j] = (n, when, _close({c: getattr(peer, c).array[:n]
                                                           for c in lines}))  # fmt: skip
            cols.append(got[1:])
        return Peers(aligned_closes(times, cols), self.member(data))

    def recent(self, data, size: int) -> Peers:
        """Peers at ``data``'s last ``size`` bars, from each peer's bars up to now."""
        times = np.asarray(data.datetime.get(size=size), dtype=np.float64)
        since = float(times[0])
        cols = []
        for j, (peer, lines) in enumerate(zip(self.datas, self._lines, strict=True)):
            n, got = len(peer), self._recent[j]
            key = (n, peer.datetime[0], peer.close[0]) if n else (0, 0.0, 0.0)
            if got is None or got[0] != key or not (len(got[1]) >= n or got[1][0] <= since):
                got = self._recent[j] = (key, *_recent_bars(peer, lines, since, size))
            cols.append(got[1:])
        return Peers(aligned_closes(times, cols), self.member(data))


def _close(bars: Mapping[str, Sequence[float]]) -> np.ndarray:
    """The causal total-return close of a feed's close (and dividend and split) values."""
    arrays = {c: np.asarray(v, dtype=np.float64) for c, v in bars.items()}
    return np.asarray(total_return_prices(arrays)["close"], dtype=np.float64)


def _recent_bars(peer, lines, since: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A peer's (times, total-return closes) from its bar at or before ``since`` up to its
    current bar (all of them if it has none that early)."""
    n = len(peer)
    k = min(n, 2 * size)
    while True:
        when = np.asarray(peer.datetime.get(size=k), dtype=np.float64)
        if k >= n or (len(when) and when[0] <= since):
            break
        k = min(n, 2 * k)
    return when, _close({c: getattr(peer, c).get(size=k) for c in lines})

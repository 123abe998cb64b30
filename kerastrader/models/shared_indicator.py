"""One model for a whole portfolio, one model call per bar for all its instruments.

``SharedKerasIndicator(d0, d1, ..., model=...)`` has a line per feed (``p0``, ``p1``, ...,
also reachable as ``indicator.prediction(i)``). Both of Backtrader's passes are served:

- vectorised (``once``): every feed's features over its whole history, once per feed and
  feature set; every feed's windows stacked into one array; ONE batched model call over all
  (bars x instruments) windows per model (per walk-forward fold); the lines, the raw outputs
  and the scores written in one assignment per feed;
- bar by bar (``next``, as live): each feed with a new bar pushes its window into one
  preallocated (instruments, W, F) buffer, and ONE call predicts them all.

``calls`` and ``bars`` count the bar-by-bar pass's model calls and bar steps, so a benchmark
can show the ratio is 1; ``batch_calls`` counts the vectorised pass's calls. ``seconds``
splits the indicator's own time into features/windows and model calls, which is what a
benchmark needs to say what bounds it.

Feeds may have different calendars: each line holds, at every bar of the first feed (the
indicator's clock), the prediction of the other feed's latest bar at or before that time.
"""

from __future__ import annotations

import math
import time
from collections.abc import ItemsView, Iterator, Mapping

import backtrader as bt
import numpy as np

from kerastrader.models.indicator import BarOutputs, DataPredictor, model_schedule, write_line
from kerastrader.models.windows import make_windows, window_ends

_CLASSES: dict[int, type] = {}

# Windows per batched call in the vectorised pass: 2**20 windows of 30 x 9 float32 are about
# 1.1 GB. A larger book is predicted in several calls of at most this many windows.
MAX_WINDOWS = 1 << 20


class BarScores(Mapping[int, float]):
    """A feed's scores (the head's one number per bar) by its own bar index, over one float
    array: the vectorised pass stores 2,500 bars in one assignment instead of 2,500 dict
    entries; the bar-by-bar pass sets one bar at a time."""

    def __init__(self) -> None:
        self._values = np.full(0, math.nan)
        self._has = np.zeros(0, dtype=bool)

    def _reserve(self, size: int) -> None:
        if size <= len(self._has):
            return
        n = max(size, 2 * len(self._has), 64)
        values, has = np.full(n, math.nan), np.zeros(n, dtype=bool)
        values[: len(self._values)], has[: len(self._has)] = self._values, self._has
        self._values, self._has = values, has

    def put(self, bars: np.ndarray, scores: np.ndarray) -> None:
        """Scores (n) for the bar indices ``bars`` (n), in one assignment."""
        bars = np.asarray(bars, dtype=np.intp)
        if len(bars) == 0:
            return
        self._reserve(int(bars.max()) + 1)
        self._values[bars] = scores
        self._has[bars] = True

    def __setitem__(self, bar: int, score: float) -> None:
        self._reserve(int(bar) + 1)
        self._values[bar] = score
        self._has[bar] = True

    def __getitem__(self, bar: int) -> float:
        i = int(bar)
        if not 0 <= i < len(self._has) or not self._has[i]:
            raise KeyError(bar)
        return float(self._values[i])

    def __iter__(self) -> Iterator[int]:
        return iter(np.flatnonzero(self._has).tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(self._has))

    def items(self) -> ItemsView[int, float]:
        return _Items(self)

    def array(self, n: int) -> np.ndarray:
        """The first ``n`` bars' scores, NaN where there is none."""
        out = np.full(n, math.nan)
        m = min(n, len(self._values))
        out[:m] = np.where(self._has[:m], self._values[:m], math.nan)
        return out


class _Items(ItemsView):
    """(bar, score) pairs from the two arrays at once, not one lookup per bar."""

    def __iter__(self) -> Iterator[tuple[int, float]]:
        scores = self._mapping
        bars = np.flatnonzero(scores._has)
        return zip(bars.tolist(), scores._values[bars].tolist(), strict=True)


class _SharedBase(bt.Indicator):
    params = (("model", None), ("backend", "onnx"))

    def __init__(self) -> None:
        self.schedule = model_schedule(self.p.model)
        self.artifact = self.schedule[-1][1]
        self.feeds = [DataPredictor(d, self.schedule, self.p.backend) for d in self.datas]
        self._bind_universe()
        self.addminperiod(1)
        self.calls = 0  # model calls in the bar-by-bar pass
        self.bars = 0  # bar steps in the bar-by-bar pass
        self.predicted_bars = 0  # bar steps on which at least one feed had a full window
        self.batch_calls = 0  # model calls in the vectorised pass
        self.seconds = {"features": 0.0, "model": 0.0}  # the indicator's own time, by part
        self._seen = [0] * len(self.datas)
        self._first: int | None = None
        self._buffers: dict[int, np.ndarray] = {}  # fold -> (feeds, W, F) windows of one bar
        self.outputs: list[BarOutputs] = [BarOutputs() for _ in self.datas]  # by feed's bar
        self.scores: list[BarScores] = [BarScores() for _ in self.datas]  # by feed's bar

    def prediction(self, i: int):
        return self.lines[i]

    def _bind_universe(self) -> None:
        """A correlation image reads every instrument of its universe: give each feed the
        universe's feeds, found by name (models/correlation_image.py)."""
        images = [a.image for _, a in self.schedule if a.image is not None]
        universes = {im.universe for im in images if im.reads_universe}
        if len(universes) > 1:
            raise ValueError("the walk-forward folds' correlation images read different universes")
        if universes:
            from kerastrader.models.correlation_image import FeedUniverse

            universe = FeedUniverse(self.datas, universes.pop())
            for feed in self.feeds:
                feed.universe = universe

    # -- vectorised pass -------------------------------------------------------------------
    def oncestart(self, start: int, end: int) -> None:
        # Backtrader hands the first bar to oncestart and the rest to once: keep it for once,
        # so that features and the model run in one pass, not two.
        self._first = start

    def once(self, start: int, end: int) -> None:
        if self._first is not None:
            start, self._first = min(start, self._first), None
        if end <= start:
            return
        self._predict_histories()
        clock = np.asarray(self.data.datetime.array[start:end], dtype=np.float64)
        rows = np.arange(start, end)
        for i, feed in enumerate(self.feeds):
            n = len(feed.data.datetime.array)
            when = np.asarray(feed.data.datetime.array[:n], dtype=np.float64)
            idx = np.searchsorted(when, clock, side="right") - 1
            scores = self.scores[i].array(n)
            values = np.where(idx >= 0, scores[np.maximum(idx, 0)], math.nan)
            write_line(self.lines[i].array, rows, values)

    def _predict_histories(self) -> None:
        """Every feed's whole history: features once per feed and feature set, then one model
        call per fold over all feeds' windows."""
        t0 = time.perf_counter()
        pending: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for i, feed in enumerate(self.feeds):
            for k, bars, x in self._feed_windows(feed):
                pending.setdefault(k, []).append((i, bars, x))
        self.seconds["features"] += time.perf_counter() - t0
        for k, items in pending.items():
            predictor = self.schedule[k][1].batch_predictor
            for group in _groups(items, MAX_WINDOWS):
                t0 = time.perf_counter()
                x = np.concatenate([x for _, _, x in group]) if len(group) > 1 else group[0][2]
                outputs = predictor.outputs(x)
                scores = np.asarray(predictor.score(outputs), dtype=np.float64)
                self.batch_calls += 1
                self.seconds["model"] += time.perf_counter() - t0
                at = 0
                for i, bars, xi in group:
                    part = slice(at, at + len(xi))
                    self.outputs[i].put(bars, outputs[part])
                    self.scores[i].put(bars, scores[part])
                    at += len(xi)

    def _feed_windows(self, feed: DataPredictor) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(fold, bar indices, scaled windows) of one feed's whole history. The features of
        a feature set are computed once over the history: each value depends only on its own
        fixed trailing bars, so every fold reads the same numbers from them."""
        n = len(feed.data.datetime.array)
        when = np.asarray(feed.data.datetime.array[:n], dtype=np.float64)
        folds = feed.fold_of(when)
        computed: dict[tuple, np.ndarray] = {}
        for k in np.unique(folds):
            if k < 0:
                continue  # before the first fold: no model has been fitted yet
            art = self.schedule[k][1]
            features = feed.features(art)  # a book's text model: this feed's own items
            # (text columns also depend on the fold's vocabulary and the feed's instrument)
            key = (tuple(features.names), features.memory, getattr(features, "text_key", None))
            if key not in computed:
                cols = feed.inputs(features)
                bars = {c: np.asarray(getattr(feed.data, c).array[:n], dtype=np.float64)
                        for c in cols}  # fmt: skip
                computed[key] = features.compute(bars)
            feats = computed[key]
            rows = np.flatnonzero(folds == k)
            lo = max(0, int(rows[0]) - (art.window - 1))
            hi = int(rows[-1]) + 1
            part = feats[lo:hi]
            ends = window_ends(~np.isnan(part).any(axis=1), art.window)
            ends = ends[ends + lo >= rows[0]]
            if len(ends) == 0:
                continue
            x = make_windows(art.scaler.transform(part), ends, art.window)
            if art.image is not None:  # every window drawn in one pass (models/images.py)
                raw = {c: np.asarray(getattr(feed.data, c).array[lo:hi], dtype=np.float64)
                       for c in art.image.columns}  # fmt: skip
                x = art.image.model_inputs(x, raw, ends, feed.peers(art, lo, hi))
            yield int(k), ends + lo, x

    # -- bar-by-bar pass -------------------------------------------------------------------
    def _buffer(self, k: int, shape: tuple[int, int]) -> np.ndarray:
        buf = self._buffers.get(k)
        if buf is None or buf.shape[1:] != shape:
            buf = self._buffers[k] = np.empty((len(self.feeds), *shape), dtype=np.float32)
        return buf

    def next(self) -> None:
        self.bars += 1
        t0 = time.perf_counter()
        members: dict[int, list[int]] = {}
        lines = self.lines
        for i, feed in enumerate(self.feeds):
            line = lines[i]
            n = len(feed.data)
            if n == self._seen[i]:  # no new bar for this feed: keep its last prediction
                line[0] = line[-1] if len(self) > 1 else math.nan
                continue
            self._seen[i] = n
            got = feed.window_now()
            if got is None:
                line[0] = math.nan
                continue
            k, ring = got
            slots = members.setdefault(k, [])
            self._buffer(k, ring.shape)[len(slots)] = ring
            slots.append(i)
        self.seconds["features"] += time.perf_counter() - t0
        self.predicted_bars += bool(members)
        for k, slots in members.items():
            step = self.feeds[slots[0]].step(k)
            t1 = time.perf_counter()
            outputs = step.batch(self._buffers[k][: len(slots)])
            self.seconds["model"] += time.perf_counter() - t1
            self.calls += 1
            scores = step.score(outputs)
            for i, s, o in zip(slots, scores.tolist(), outputs, strict=True):
                bar = self._seen[i] - 1
                lines[i][0] = s
                self.outputs[i][bar] = o
                self.scores[i][bar] = s


def _groups(items: list, limit: int) -> Iterator[list]:
    """Consecutive items whose windows add up to at most ``limit`` (one item may exceed it)."""
    group: list = []
    size = 0
    for item in items:
        if group and size + len(item[2]) > limit:
            yield group
            group, size = [], 0
        group.append(item)
        size += len(item[2])
    if group:
        yield group


def SharedKerasIndicator(*datas, model, backend: str = "onnx") -> bt.Indicator:  # noqa: N802
    """A shared-model indicator over ``datas`` with a line ``p<i>`` per feed."""
    n = len(datas)
    if n not in _CLASSES:
        _CLASSES[n] = type(
            f"SharedKerasIndicator{n}",
            (_SharedBase,),
            {"lines": tuple(f"p{i}" for i in range(n))},
        )
    return _CLASSES[n](*datas, model=model, backend=backend)

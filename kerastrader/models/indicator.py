"""``KerasIndicator``: the only bridge between a Keras model and Backtrader.

Its line ``prediction`` is the model's output for each bar (for the direction model, the
probability that the next bar closes higher), NaN until the warm-up (feature look-back plus
window) is complete. It serves both of Backtrader's passes:

- ``once`` (vectorised, the default backtest): features for every bar with the full-history
  path, every window stacked, one batched call of a traced ``tf.function``;
- ``next`` (bar by bar, as in live trading): the new bar pushed through the features' compiled
  step (the same kernels as the full-history path, over a fixed-size state), its scaled row
  appended to the window of the last W rows, one compiled model call (ONNX Runtime).

Use it in any Backtrader strategy::

    class MyStrategy(bt.Strategy):
        def __init__(self):
            self.p_up = KerasIndicator(self.data, model="runs/orcl/model")

        def next(self):
            if self.p_up[0] > 0.55 and not self.position:
                self.buy()
"""

from __future__ import annotations

import array
import bisect
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import backtrader as bt
import numpy as np

from kerastrader.models.artifact import Artifact
from kerastrader.models.feature_stream import BAR_FIELDS
from kerastrader.models.windows import make_windows, window_ends


def model_schedule(model) -> list[tuple[float, Artifact]]:
    """(first bar as a Backtrader date number, artifact) per model, in order of use."""
    from kerastrader.models.walkforward import WalkForwardModel, load_model

    if model is None:
        raise TypeError("KerasIndicator needs model= (an artifact directory or Artifact)")
    if isinstance(model, str | Path):
        model = load_model(model)
    if isinstance(model, WalkForwardModel):
        return [(bt.date2num(start.to_pydatetime()), art) for start, art in model.schedule()]
    return [(-math.inf, model)]


class BarOutputs(Mapping[int, np.ndarray]):
    """The model's raw outputs by bar index, read as a mapping (``outputs[bar]``,
    ``bar in outputs``, ``outputs.items()``), as the runner's scoring does.

    Stored as one (bars, k) float64 array and a mask of the bars that have outputs, so that
    the vectorised pass writes 20,000 bars in one assignment instead of 20,000 dict entries;
    the bar-by-bar pass sets one row at a time (``outputs[bar] = row``).
    """

    def __init__(self) -> None:
        self._values = np.empty((0, 0), dtype=np.float64)
        self._has = np.zeros(0, dtype=bool)
        self._count = 0

    def _reserve(self, size: int, width: int) -> None:
        held = len(self._has)
        if held and self._values.shape[1] != width:
            raise ValueError(f"outputs of width {width} after width {self._values.shape[1]}")
        if size <= held:
            return
        n = max(size, 2 * held, 64)
        values = np.full((n, width), np.nan)
        has = np.zeros(n, dtype=bool)
        if held:
            values[:held] = self._values
            has[:held] = self._has
        self._values, self._has = values, has

    def put(self, bars: np.ndarray, outputs: np.ndarray) -> None:
        """Outputs (n, k) for the bar indices ``bars`` (n), in one assignment."""
        bars = np.asarray(bars, dtype=np.intp)
        outputs = np.asarray(outputs, dtype=np.float64).reshape(len(bars), -1)
        if len(bars) == 0:
            return
        if bars.min() < 0:
            raise IndexError("negative bar index")
        self._reserve(int(bars.max()) + 1, outputs.shape[1])
        self._count += int(np.count_nonzero(~self._has[bars]))
        self._values[bars] = outputs
        self._has[bars] = True

    def __setitem__(self, bar: int, row: np.ndarray) -> None:
        i = int(bar)
        row = np.asarray(row, dtype=np.float64).reshape(-1)
        if i < 0:
            raise IndexError("negative bar index")
        if i >= len(self._has) or self._values.shape[1] != len(row):
            self._reserve(i + 1, len(row))
        if not self._has[i]:
            self._has[i] = True
            self._count += 1
        self._values[i] = row

    def __getitem__(self, bar: int) -> np.ndarray:
        i = int(bar)
        if not 0 <= i < len(self._has) or not self._has[i]:
            raise KeyError(bar)
        return self._values[i]

    def __contains__(self, bar: object) -> bool:
        try:
            i = int(bar)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False
        return 0 <= i < len(self._has) and bool(self._has[i])

    def __iter__(self) -> Iterator[int]:
        return iter(self.bars().tolist())

    def __len__(self) -> int:
        return self._count

    def bars(self) -> np.ndarray:
        """The bar indices that have outputs, ascending."""
        return np.flatnonzero(self._has)


def write_line(line: array.array, rows: np.ndarray, values: np.ndarray) -> None:
    """``line[rows] = values`` on a Backtrader line's preallocated array in one assignment
    (through a numpy view of its buffer) instead of one Python store per bar."""
    if isinstance(line, array.array) and line.typecode == "d":
        view = np.frombuffer(line, dtype=np.float64)
        try:
            view[rows] = values
        finally:
            del view  # release the buffer: Backtrader may grow the array later
        return
    for i, v in zip(rows.tolist(), np.asarray(values).tolist(), strict=True):
        line[i] = v


class DataPredictor:
    """The per-feed half of a model indicator: features, scaling, windows and fold choice for
    one data feed, in both passes. The model calls themselves are the caller's, so that a
    portfolio indicator can batch every feed's window into one call per bar."""

    def __init__(self, data, schedule: list[tuple[float, Artifact]], backend: str) -> None:
        self.data = data
        self.schedule = schedule
        self.backend = backend
        self._starts = np.array([s for s, _ in schedule])
        self._start_list = [float(s) for s, _ in schedule]
        self._single = len(schedule) == 1 and self._start_list[0] == -math.inf
        self._stream = None  # the current fold's FeatureStream (None: recomputed rows)
        self._reads: list[tuple[int, object]] = []  # (FeatureStream.bar slot, line) per bar
        self._steps: dict[int, object] = {}
        self._fold = -1
        self._features = None  # the current fold's feature set as it reads this feed
        self._ring = np.empty(0, dtype=np.float32)
        self._ring_bar = -1  # len(data) when the ring's last row was computed
        self._inputs: dict[int, list[str]] = {}  # id(feature set) -> lines read
        self.universe = None  # FeedUniverse: the peers a correlation image reads (shared)

    @property
    def warmup(self) -> int:
        return max(a.warmup for _, a in self.schedule)

    def fold_of(self, when: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._starts, when, side="right") - 1

    def step(self, k: int):
        if k not in self._steps:
            self._steps[k] = self.schedule[k][1].step_predictor(self.backend)
        return self._steps[k]

    # -- vectorised pass -------------------------------------------------------------------
    def once(self, start: int, end: int):
        """Yield (bar indices, scores, raw outputs) for the bars [start, end) of the feed, one
        batched model call per fold."""
        when = np.asarray(self.data.datetime.array[start:end], dtype=np.float64)
        folds = self.fold_of(when)
        for k in np.unique(folds):
            if k < 0:
                continue  # before the first fold: no model has been fitted yet
            rows = np.flatnonzero(folds == k) + start
            got = self._once_range(self.schedule[k][1], int(rows[0]), int(rows[-1]) + 1)
            if got is not None:
                yield got

    def _once_range(self, art: Artifact, start: int, end: int):
        features = self.features(art)
        lo = max(0, start - (features.lookback - 1) - (art.window - 1))
        bars = {
            c: np.asarray(getattr(self.data, c).array[lo:end], dtype=np.float64)
            for c in self.inputs(features)
        }
        feats = features.compute(bars)
        ends = window_ends(~np.isnan(feats).any(axis=1), art.window)
        ends = ends[ends + lo >= start]
        if len(ends) == 0:
            return None
        x = make_windows(art.scaler.transform(feats), ends, art.window)
        if art.image is not None:  # every window rendered in one pass (models/images.py)
            raw = {c: np.asarray(getattr(self.data, c).array[lo:end], dtype=np.float64)
                   for c in art.image.columns}  # fmt: skip
            x = art.image.model_inputs(x, raw, ends, self.peers(art, lo, end))
        predictor = art.batch_predictor
        outputs = predictor.outputs(x)
        return ends + lo, predictor.score(outputs), outputs

    def features(self, art: Artifact):
        """The model's feature set as it reads this feed (a book's text model: the feed's own
        items, found by the feed's name; :meth:`Artifact.features_for`)."""
        return art.features_for(getattr(self.data, "_name", ""))

    def inputs(self, features) -> list[str]:
        """The lines the features read from this feed: OHLCV, and the dividend and split lines
        when the feed has them (total-return features; a plain feed gives price features)."""
        key = id(features)
        if key not in self._inputs:
            aliases = set(self.data.lines.getlinealiases())
            self._inputs[key] = [c for c in features.inputs if c in aliases]
        return self._inputs[key]

    def peers(self, art: Artifact, lo: int, hi: int):
        """The universe's closes at this feed's rows [lo, hi) when the image reads them, else
        None (a correlation image without a universe then says so in one line)."""
        if not art.image.reads_universe or self.universe is None:
            return None
        return self.universe.history(self.data, lo, hi)

    def recent_peers(self, art: Artifact):
        """The same at this feed's last window of bars, from each peer's bars up to now."""
        if not art.image.reads_universe or self.universe is None:
            return None
        return self.universe.recent(self.data, art.window)

    # -- bar-by-bar pass -------------------------------------------------------------------
    def _recent(self, columns, size: int) -> dict[str, np.ndarray]:
        return {c: np.asarray(getattr(self.data, c).get(size=size), dtype=np.float64)
                for c in columns}  # fmt: skip

    def _fold_now(self) -> int:
        if self._single:
            return 0  # one model for every bar: no date to look up
        return bisect.bisect_right(self._start_list, self.data.datetime[0]) - 1

    def _open_fold(self, k: int, art: Artifact) -> None:
        """A new fold's model: its own features, scaler and window."""
        self._fold = k
        self._ring_bar = -1
        features = self._features = self.features(art)
        self._size = features.lookback + art.window - 1  # bars of the first full window
        if hasattr(features, "stream"):  # one compiled step per bar (models/feature_stream.py)
            self._stream = features.stream(art.scaler, art.window)
            self._ring = self._stream.window
            lines = self.data.lines
            self._reads = [(BAR_FIELDS.index(c), getattr(lines, c))
                           for c in self.inputs(features) if c in BAR_FIELDS]  # fmt: skip
        else:  # a feature set without a stream: its last row recomputed on the look-back
            self._stream = None
            self._ring = np.empty((art.window, len(features)), dtype=np.float32)

    def _recomputed(self, art: Artifact, bar: int, size: int) -> bool:
        features, scaler = self._features, art.scaler
        if self._ring_bar == bar - 1:
            row = features.compute_last(self._recent(self.inputs(features), features.lookback))
            self._ring[:-1] = self._ring[1:]
            self._ring[-1] = scaler.transform(row)
        elif self._ring_bar != bar:
            feats = features.compute(self._recent(self.inputs(features), size))
            self._ring[:] = scaler.transform(feats[-art.window :])
        return not np.isnan(self._ring).any()

    def window_now(self) -> tuple[int, np.ndarray] | None:
        """(fold, scaled window ending at the feed's current bar), or None when no model
        applies yet or the window is not complete.

        The window is the stream's own buffer (overwritten at the next bar): copy it to keep
        it. Each new bar is one compiled step over the stream's fixed-size state; the first
        bar after the warm-up, a fold switch or a gap (a bar this feed was not asked about)
        seeds the stream from the last ``lookback + window - 1`` bars through the same step.
        """
        k = self._fold_now()
        if k < 0:
            return None
        art = self.schedule[k][1]
        if k != self._fold:
            self._open_fold(k, art)
        bar = len(self.data)
        size = self._size
        if bar < size:
            return None
        stream = self._stream
        if stream is None:
            ready = self._recomputed(art, bar, size)
        elif self._ring_bar == bar - 1:
            values = stream.bar
            for i, line in self._reads:
                values[i] = line[0]
            ready = stream.step()
        elif self._ring_bar != bar:
            ready = stream.seed(self._recent(self.inputs(self._features), size))
        else:
            ready = stream.ready
        self._ring_bar = bar
        if not ready:
            return None
        if art.image is not None:  # the same rendering, a stack of one (models/images.py)
            recent = self._recent(art.image.columns, art.window)
            return k, art.image.last_input(self._ring, recent, self.recent_peers(art))
        return k, self._ring


class KerasIndicator(bt.Indicator):
    """A Keras model's prediction per bar, from causal features of the data feed.

    ``model`` is an artifact directory (or a loaded ``Artifact``) or a walk-forward directory
    (or ``WalkForwardModel``): then each bar is predicted by the fold whose period holds it,
    in both passes, and the newest fold carries on after the last boundary. ``outputs`` keeps
    the model's raw outputs per bar (three probabilities for a three-class head), a
    :class:`BarOutputs` mapping bar index -> outputs.
    """

    lines = ("prediction",)
    params = (
        ("model", None),  # artifact / walk-forward directory, Artifact or WalkForwardModel
        ("backend", "onnx"),  # bar-by-bar inference: "onnx" or "tf"
    )
    plotinfo = dict(subplot=True, plotname="model")

    def __init__(self) -> None:
        self.schedule = model_schedule(self.p.model)
        self.artifact = self.schedule[-1][1]  # the newest model
        self.feed = DataPredictor(self.data, self.schedule, self.p.backend)
        self.addminperiod(self.feed.warmup)
        self.outputs = BarOutputs()  # bar index -> raw model outputs
        self._first: int | None = None  # the first bar handed to oncestart

    def oncestart(self, start: int, end: int) -> None:
        # Backtrader hands the first bar after the warm-up to oncestart and the rest to once:
        # keep it for once, so that the features and the model run in one pass, not two.
        self._first = start

    def once(self, start: int, end: int) -> None:
        if self._first is not None:
            start, self._first = min(start, self._first), None
        if end <= start:
            return
        out = self.lines.prediction.array
        for rows, scores, outputs in self.feed.once(start, end):
            write_line(out, rows, scores)
            self.outputs.put(rows, outputs)

    def next(self) -> None:
        line = self.lines.prediction
        got = self.feed.window_now()
        if got is None:
            line[0] = math.nan
            return
        k, ring = got
        step = self.feed.step(k)
        line[0] = step(ring)
        if step.last_outputs is not None:
            self.outputs[len(self.data) - 1] = step.last_outputs[0]

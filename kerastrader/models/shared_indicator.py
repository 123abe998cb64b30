"""One model for a whole portfolio, one model call per bar for all its instruments.

``SharedKerasIndicator(d0, d1, ..., model=...)`` has a line per feed (``p0``, ``p1``, ...,
also reachable as ``indicator.prediction(i)``). The vectorised pass predicts each feed's bars
in one batched call per feed (per fold); the bar-by-bar pass, as live, stacks the current
window of every feed that has a new bar and makes ONE call for all of them. ``calls`` and
``bars`` count model calls and bar steps, so a benchmark can show the ratio is 1.

Feeds may have different calendars: each line holds, at every bar of the first feed (the
indicator's clock), the prediction of the other feed's latest bar at or before that time.
"""

from __future__ import annotations

import math

import backtrader as bt
import numpy as np

from kerastrader.models.indicator import DataPredictor, model_schedule

_CLASSES: dict[int, type] = {}


class _SharedBase(bt.Indicator):
    params = (("model", None), ("backend", "onnx"))

    def __init__(self) -> None:
        self.schedule = model_schedule(self.p.model)
        self.artifact = self.schedule[-1][1]
        self.feeds = [DataPredictor(d, self.schedule, self.p.backend) for d in self.datas]
        self.addminperiod(1)
        self.calls = 0  # model calls in the bar-by-bar pass
        self.bars = 0  # bar steps in the bar-by-bar pass
        self.predicted_bars = 0  # bar steps on which at least one feed had a full window
        self._seen = [0] * len(self.datas)
        self.outputs: list[dict[int, np.ndarray]] = [{} for _ in self.datas]
        self.scores: list[dict[int, float]] = [{} for _ in self.datas]  # by each feed's bar

    def prediction(self, i: int):
        return self.lines[i]

    # -- vectorised pass -------------------------------------------------------------------
    def once(self, start: int, end: int) -> None:
        if end <= start:
            return
        clock = np.asarray(self.data.datetime.array[start:end], dtype=np.float64)
        for i, feed in enumerate(self.feeds):
            n = len(feed.data.datetime.array)
            scores = np.full(n, math.nan)
            for rows, s, outputs in feed.once(0, n):
                scores[rows] = s
                for j, r in enumerate(rows):
                    self.outputs[i][int(r)] = outputs[j]
                    self.scores[i][int(r)] = float(s[j])
            when = np.asarray(feed.data.datetime.array[:n], dtype=np.float64)
            idx = np.searchsorted(when, clock, side="right") - 1
            line = self.lines[i].array
            for j, k in enumerate(idx):
                line[start + j] = scores[k] if k >= 0 else math.nan

    # -- bar-by-bar pass -------------------------------------------------------------------
    def next(self) -> None:
        self.bars += 1
        pending: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, feed in enumerate(self.feeds):
            n = len(feed.data)
            if n == self._seen[i]:  # no new bar for this feed: keep its last prediction
                self.lines[i][0] = self.lines[i][-1] if len(self) > 1 else math.nan
                continue
            self._seen[i] = n
            got = feed.window_now()
            if got is None:
                self.lines[i][0] = math.nan
                continue
            k, ring = got
            pending.setdefault(k, []).append((i, ring.copy()))
        self.predicted_bars += bool(pending)
        for k, items in pending.items():
            step = self.feeds[items[0][0]].step(k)
            outputs = step.batch(np.stack([ring for _, ring in items]))
            self.calls += 1
            scores = step.score(outputs)
            for (i, _), s, o in zip(items, scores, outputs, strict=True):
                bar = len(self.feeds[i].data) - 1
                self.lines[i][0] = float(s)
                self.outputs[i][bar] = o
                self.scores[i][bar] = float(s)


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

"""A leakage alarm: the configured pipeline, run on random walks, must not beat a coin.

A random walk's direction over the next h bars is independent of everything up to now, so a
pipeline whose out-of-sample calls match it reliably more (or less) often than half the time
is reading the future. The alarm builds random walks shaped like the configured data (same
symbols, same timestamps, same volatility), fits the models the way a run does (the runner's
loader, one shared model or one per instrument, walk-forward folds when enabled), predicts
through the run's own indicators over the run's backtest period, and scores those predictions:

- against the walk's direction over the horizon (Close[t+h] > Close[t]): catches look-ahead
  features and windows that reach future bars, in training or in the indicator;
- against the pipeline's own labels, when they differ from that direction: catches labels
  that do not lie wholly in the future (a shifted label is predictable from the past);

each as a hit rate and a ROC AUC with Newey-West standard errors (:mod:`leakage_stats`), so
overlapping h-bar labels do not make an honest pipeline look leaky.

What a random walk cannot show: leaks whose only effect is optimism about a model that has
nothing to find. A scaler fitted on the test period or a missing purge between training and
validation change a random-walk model's numbers by less than noise, because a random walk has
no structure for them to leak; tests of the splits guard those (see the README).
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from kerastrader.config import Config
from kerastrader.models.heads import Head
from kerastrader.models.leakage_stats import Score, auc_score, hac_lag, hit_rate_score
from kerastrader.strategies.model_strategy import ModelStrategy

log = logging.getLogger(__name__)

SIGMAS = 3.0  # how far from chance, in Newey-West standard errors, counts as "reliably"


def random_walk_like(bars: pd.DataFrame, seed: int | Sequence[int] = 0) -> pd.DataFrame:
    """Bars on the same timestamps with the same bar-to-bar volatility, but no structure.

    The log close is a driftless Gaussian walk, so P(Close[t+h] > Close[t]) is exactly 1/2
    for every t and h, whatever came before: the null hypothesis the alarm tests.
    """
    rng = np.random.default_rng(seed)
    n = len(bars)
    close0 = bars["close"].to_numpy()
    vol = float(np.nanstd(np.diff(np.log(close0)))) or 0.01
    close = close0[0] * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = close * np.exp(rng.normal(0.0, vol / 3, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, vol / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, vol / 2, n)))
    volume = rng.lognormal(np.log(max(float(bars["volume"].median()), 1.0)), 0.5, n)
    out = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=bars.index,
    )
    out.attrs["source"] = f"random walk like {bars.attrs.get('source', 'the data')}"
    return out


@dataclass(frozen=True)
class LeakageResult:
    """The alarm's statistics: each a :class:`Score` with a Newey-West z."""

    scores: tuple[Score, ...]
    symbols: tuple[str, ...]
    horizon: int
    walk_forward: bool

    @property
    def n_test(self) -> int:
        return self.scores[0].n

    @property
    def accuracy(self) -> float:
        return self.scores[0].estimate

    @property
    def leaks(self) -> bool:
        # Two-sided: being reliably *wrong* about a random walk needs the future just as much
        # (an under-trained model can learn a leaky feature with the sign flipped).
        return any(abs(s.z) > SIGMAS for s in self.scores if math.isfinite(s.z))

    def summary(self) -> str:
        pipeline = f"{len(self.symbols)} symbol{'s' if len(self.symbols) > 1 else ''}"
        if self.walk_forward:
            pipeline += ", walk-forward"
        parts = [
            f"{s.name} {s.estimate:.3f} ({s.z:+.1f} sigma)"
            for s in self.scores
            if math.isfinite(s.estimate)
        ]
        verdict = (
            "LEAK: the pipeline predicts a random walk; something sees the future"
            if self.leaks
            else "no leak detected: a random walk stays unpredictable"
        )
        return (
            f"random-walk test bars: {self.n_test} ({pipeline}, horizon {self.horizon}, "
            f"Newey-West lag {self.scores[0].lag}); {', '.join(parts)}. {verdict}"
        )


class _PredictOnly(ModelStrategy):
    """A run's model wiring (an indicator per feed, or the shared one) without its orders."""

    def next(self) -> None:
        pass


def _fit(
    cfg: Config, walks: dict[str, pd.DataFrame], info: dict[str, Any], workdir: Path
) -> dict[str, Any]:
    """symbol -> the model a run would fit on ``walks``: one shared or one per instrument,
    an artifact or a walk-forward schedule, as the runner chooses."""
    from kerastrader.models.training import train
    from kerastrader.models.walkforward import walk_forward

    per_instrument = len(walks) > 1 and cfg["portfolio"]["models"] == "per_instrument"
    groups = {sym: {sym: walks[sym]} for sym in walks} if per_instrument else {"": walks}
    models: dict[str, Any] = {}
    for name, group in groups.items():
        sub = workdir / (name or "shared")
        if cfg["walkforward"]["enabled"]:
            model = walk_forward(group, copy.deepcopy(cfg), info, sub / "model", workdir=sub)
        else:
            bars = group if len(group) > 1 else next(iter(group.values()))
            group_info = {**info, "symbol": name} if name else info
            model = train(bars, copy.deepcopy(cfg), group_info, workdir=sub).artifact
        models.update(dict.fromkeys(group, model))
    return models


def _predict(
    cfg: Config, walks: dict[str, pd.DataFrame], models: dict[str, Any], head: Head
) -> dict[str, np.ndarray]:
    """Every walk bar's prediction, made by the run's strategy wiring in Backtrader."""
    from kerastrader.feeds.btfeed import make_feed

    cerebro = bt.Cerebro(stdstats=False, runonce=cfg["backtest"]["runonce"])
    for sym, bars in walks.items():
        cerebro.adddata(make_feed(bars, sym), name=sym)
    distinct = {id(m) for m in models.values()}
    cerebro.addstrategy(
        _PredictOnly,
        model=next(iter(models.values())) if len(distinct) == 1 else models,
        settings={
            **{k: cfg[k] for k in ("strategy", "sizing", "risk", "portfolio")},
            "head": head.kind,
            "horizon": head.horizon,
        },
    )
    strategy = cerebro.run()[0]
    return {sym: strategy.predictions_by_bar(i, len(bars))[0]
            for i, (sym, bars) in enumerate(walks.items())}  # fmt: skip


def label_direction(head: Head, labels: np.ndarray) -> np.ndarray:
    """The up (1) / down (0) reading of a head's labels; NaN for a three-class "flat" and
    for unlabelled bars."""
    labels = np.asarray(labels, dtype=float)
    if head.kind == "regression":
        return np.where(np.isnan(labels), np.nan, (labels > 0).astype(float))
    if head.kind == "three_class":
        return np.where(labels == 2, 1.0, np.where(labels == 0, 0.0, np.nan))
    return labels


def score_predictions(
    walks: dict[str, pd.DataFrame],
    predictions: dict[str, np.ndarray],
    periods: dict[str, tuple[int, int]],
    head: Head,
) -> tuple[Score, ...]:
    """The alarm's statistics for each walk's predictions over its (first, last) rows.

    Calls are "up" when the head's score is above its neutral point (0.5; 0 for a predicted
    return). Scored against the walk's direction over the horizon, and against the head's own
    labels where those read differently (a shifted label).
    """
    h = head.horizon
    threshold = 0.0 if head.kind == "regression" else 0.5
    truth, own = [], []
    for sym, walk in walks.items():
        close = walk["close"].to_numpy()
        first, last = periods[sym]
        rows = np.arange(first, min(last, len(close) - 1 - h) + 1)
        pred = np.asarray(predictions[sym], dtype=float)
        rows = rows[np.isfinite(pred[rows])]
        p = pred[rows]
        truth.append((p, (close[rows + h] > close[rows]).astype(float)))
        labelled = label_direction(head, head.labels(close)[rows])
        known = ~np.isnan(labelled)
        own.append((p[known], labelled[known]))

    def calls(pairs):
        return [((p > threshold).astype(float), y) for p, y in pairs]

    scores = [hit_rate_score(calls(truth), h), auc_score(truth, h)]
    same = all(np.array_equal(a[1], b[1]) for a, b in zip(truth, own, strict=True))
    if not same:
        scores += [
            replace(hit_rate_score(calls(own), h), name="label accuracy"),
            replace(auc_score(own, h), name="label roc_auc"),
        ]
    return tuple(scores)


def check_leakage(cfg: Config, seed: int = 0) -> LeakageResult:
    """Run the configured pipeline, as a run would, on random walks shaped like its data.

    The data comes from the runner's loader (every configured symbol), each symbol gets its
    own walk (seeded by ``seed`` and its position), the models are fitted as a run fits them
    (walk-forward when ``walkforward.enabled``), and the predictions are the ones a
    backtest's strategy would see over its backtest period.
    """
    from kerastrader.backtest import backtest_period, load_universe

    universe, info = load_universe(cfg)
    walks = {sym: random_walk_like(bars, seed=[seed, i])
             for i, (sym, bars) in enumerate(universe.items())}  # fmt: skip
    walk_info = {**info, "path": f"random walk like {info['path']}", "sha256": None}
    head = Head.from_config(cfg["label"])
    log.info(
        "leakage check: random walks like %s (%s), horizon %d, walk-forward %s",
        info["path"],
        ", ".join(walks),
        head.horizon,
        "on" if cfg["walkforward"]["enabled"] else "off",
    )
    with tempfile.TemporaryDirectory(prefix="kerastrader-leakage-") as tmp:
        models = _fit(cfg, walks, walk_info, Path(tmp))
        predictions = _predict(cfg, walks, models, head)
    periods = {}
    for sym, walk in walks.items():
        first, last, _ = backtest_period(walk, cfg, models[sym], sym)
        periods[sym] = (first, last)
    scores = score_predictions(walks, predictions, periods, head)
    result = LeakageResult(scores, tuple(walks), head.horizon, bool(cfg["walkforward"]["enabled"]))
    if hac_lag(head.horizon) >= result.n_test:
        log.warning("only %d scored bars for a Newey-West lag of %d: the standard errors are "
                    "unreliable", result.n_test, hac_lag(head.horizon))  # fmt: skip
    return result

"""Walk-forward retraining: every predicted bar comes from a model fitted strictly before it.

Fold k predicts the bars ``[s_k, s_k + step)``. Its validation period is the
``validation_bars`` bars just before ``s_k``, its training period the bars before that: all of
them (expanding) or the last ``train_bars`` (rolling). Each period boundary drops the samples
whose label reaches across it (the purge, ``label.horizon`` bars) plus ``split.embargo`` bars,
so the last training label is known before the first bar the fold predicts.

Each fold is an ordinary artifact trained by the one training path
(:func:`kerastrader.models.training.train`), saved as ``fold_000/``, ``fold_001/``, ... next to
``walkforward.json`` (the schedule, per-fold metrics and overall metrics).
``KerasIndicator`` reads the directory and uses fold k's model from ``s_k`` on, in both passes;
the newest fold keeps predicting after the last boundary, as it would live.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerastrader.config import Config
from kerastrader.errors import ConfigError, ModelMismatchError
from kerastrader.models.artifact import Artifact, load_artifact, save_artifact
from kerastrader.models.features import FeatureSet
from kerastrader.models.heads import Head
from kerastrader.models.training import stamp

log = logging.getLogger(__name__)

SCHEDULE_FILE = "walkforward.json"


@dataclass
class Fold:
    start: pd.Timestamp  # the first bar this fold's model predicts
    artifact: Artifact
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class WalkForwardModel:
    """A schedule of artifacts; quacks like an :class:`Artifact` where a backtest needs it."""

    folds: list[Fold]
    metadata: dict[str, Any]
    path: Path | None = None

    @property
    def warmup(self) -> int:
        return max(f.artifact.warmup for f in self.folds)

    @cached_property
    def head(self) -> Head:
        return self.folds[0].artifact.head

    def check_compatible(self, *args: Any, **kwargs: Any) -> None:
        for fold in self.folds:
            fold.artifact.check_compatible(*args, **kwargs)

    def schedule(self) -> list[tuple[pd.Timestamp | None, Artifact]]:
        return [(f.start, f.artifact) for f in self.folds]


def fold_starts(dates: pd.DatetimeIndex, cfg: Config, lookback: int) -> list[tuple[int, int]]:
    """(first, last) predicted row of every fold on ``dates`` (the union of all symbols')."""
    wf = cfg["walkforward"]
    horizon = int(cfg["label"]["horizon"])
    gap = horizon + int(cfg["split"]["embargo"])
    window = int(cfg["model"]["window"])
    n = len(dates)
    earliest = (lookback - 1) + (window - 1) + int(wf["train_bars"]) + int(wf["validation_bars"])
    earliest += 2 * gap
    if wf["start"]:
        try:
            first = int(dates.searchsorted(pd.Timestamp(wf["start"]), side="left"))
        except ValueError:
            raise ConfigError(f"walkforward.start = {wf['start']!r}: not a date") from None
        if first < earliest:
            raise ConfigError(
                f"walkforward.start = {wf['start']}: the first fold needs {earliest} bars before "
                f"it (features, window, train_bars, validation_bars, purge); the earliest "
                f"possible start is {stamp(dates[min(earliest, n - 1)])}"
            )
    else:
        first = earliest
    last_labelled = n - 1 - horizon
    if first > last_labelled:
        raise ConfigError(
            f"walk-forward needs more data: the first fold would start at bar {first + 1} but "
            f"the data has {n} bars (shorten walkforward.train_bars / validation_bars)"
        )
    out = []
    step = int(wf["step"])
    s = first
    while s <= last_labelled:
        out.append((s, min(s + step, n) - 1))
        if wf["folds"] and len(out) >= int(wf["folds"]):
            break
        s += step
    if not wf["folds"] or len(out) < int(wf["folds"]):
        out[-1] = (out[-1][0], n - 1)  # the last fold predicts to the end of the data
    return out


def walk_forward(
    universe: dict[str, pd.DataFrame],
    cfg: Config,
    data_info: dict[str, Any],
    path: str | Path,
    workdir: str | Path | None = None,
) -> WalkForwardModel:
    """Train every fold and save the schedule at ``path`` (atomically, like an artifact)."""
    from kerastrader.models.training import train

    path = Path(path)
    head = Head.from_config(cfg["label"])
    feature_set = FeatureSet(cfg["features"]["names"], memory=cfg["features"]["memory"])
    dates = pd.DatetimeIndex(sorted(set().union(*(b.index for b in universe.values()))))
    plan = fold_starts(dates, cfg, feature_set.lookback)
    wf = cfg["walkforward"]
    validation_bars = int(wf["validation_bars"])
    log.info(
        "walk-forward: %d folds, %s training, retrain every %d bars, predicting %s .. %s",
        len(plan),
        wf["scheme"],
        int(wf["step"]),
        stamp(dates[plan[0][0]]),
        stamp(dates[plan[-1][1]]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    folds: list[Fold] = []
    rows: list[dict[str, Any]] = []
    y_all, out_all = [], []
    fold_cfgs = [_fold_config(cfg, dates, s, e) for s, e in plan]
    workers = min(int(wf.get("workers", 1)), len(plan))
    try:
        trained = _train_folds(universe, fold_cfgs, data_info, workdir, tmp, workers,
                               wf.get("executor", "local")) if workers > 1 else None  # fmt: skip
        for k, (s, e) in enumerate(plan):
            fold_cfg = fold_cfgs[k]
            split = fold_cfg["split"]
            log.info(
                "fold %d/%d: train %s .. %s, validate .. %s, predict %s .. %s",
                k + 1,
                len(plan),
                stamp(pd.Timestamp(split["train_start"] or dates[0])),
                stamp(pd.Timestamp(split["train_end"])),
                stamp(pd.Timestamp(split["validation_end"])),
                stamp(dates[s]),
                stamp(dates[e]),
            )
            if trained is not None:
                result = trained[k]
            else:
                fold_dir = Path(workdir) / f"fold_{k:03d}" if workdir else None
                result = train(
                    universe if len(universe) > 1 else next(iter(universe.values())),
                    fold_cfg,
                    data_info,
                    workdir=fold_dir,
                )
            art = result.artifact
            if trained is None:
                save_artifact(art, tmp / f"fold_{k:03d}")
            meta = art.metadata
            test = meta["metrics"]["test"]
            row = {
                "fold": k,
                "train": f"{meta['periods']['train'][0]} .. {meta['periods']['train'][1]}",
                "validation_end": meta["periods"]["validation"][1],
                "predicts": f"{stamp(dates[s])} .. {stamp(dates[e])}",
                "epochs": meta["training"]["epochs_run"],
                "val_loss": meta["training"]["best_val_loss"],
                "n": test["n_test"],
                **_headline(test),
            }
            rows.append(row)
            folds.append(Fold(dates[s], art, row))
            y_all.append(result.y_test)
            out_all.append(result.outputs_test)
        overall = head.metrics(np.concatenate(y_all), np.concatenate(out_all))
        first = folds[0].artifact.metadata
        metadata = {
            "kind": "walkforward",
            "scheme": wf["scheme"],
            "train_bars": int(wf["train_bars"]),
            "validation_bars": validation_bars,
            "step": int(wf["step"]),
            "purge": int(cfg["label"]["horizon"]),
            "embargo": int(cfg["split"]["embargo"]),
            "label": first["label"],
            "features": first["features"],
            "window": first["window"],
            "folds": [
                {"start": stamp(f.start), "dir": f"fold_{i:03d}", **f.info}
                for i, f in enumerate(folds)
            ],  # fmt: skip
            "metrics": {"test": overall},
            "periods": {
                "train": first["periods"]["train"],
                "validation": first["periods"]["validation"],
                "test": [stamp(dates[plan[0][0]]), stamp(dates[plan[-1][1]])],
            },
            "symbols": first["symbols"],
            "data": data_info,
        }
        (tmp / SCHEDULE_FILE).write_text(json.dumps(metadata, indent=2))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for i, fold in enumerate(folds):
        fold.artifact.path = path / f"fold_{i:03d}"
    return WalkForwardModel(folds, metadata, path)


def _fold_config(cfg: Config, dates: pd.DatetimeIndex, s: int, e: int) -> Config:
    """Fold ``[s, e]``'s config: its train, validation and test periods as exact bar times
    (a date alone would mean the whole trading day: an intraday bar at 00:00 UTC stamps as a
    date)."""
    wf = cfg["walkforward"]
    last_val = s - 1
    last_train = last_val - int(wf["validation_bars"])
    first_train = 0
    if wf["scheme"] == "rolling":
        first_train = max(0, last_train - int(wf["train_bars"]) + 1)
    fold_cfg = copy.deepcopy(cfg)
    fold_cfg["split"].update(
        train_start=stamp(dates[first_train]) if first_train else "",
        train_end=dates[last_train].isoformat(),
        validation_end=dates[last_val].isoformat(),
        test_end=dates[e].isoformat(),
    )
    return fold_cfg


@dataclass
class _FoldTrained:
    """A fold trained in another process: its artifact is on disk, its test outputs here."""

    artifact: Artifact
    y_test: np.ndarray
    outputs_test: np.ndarray | None


def train_fold_task(
    universe: dict[str, pd.DataFrame],
    fold_cfg: Config,
    data_info: dict[str, Any],
    workdir: str | None,
    save_to: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One fold in a worker process: train, save the artifact at ``save_to``, return the test
    labels and outputs (the artifact travels through the disk, not the pipe)."""
    from kerastrader.models.training import train
    from kerastrader.sweeps.executors import captured_output

    log_file = Path(workdir) / "train.log" if workdir else None
    with captured_output(log_file):
        bars = {s: _writable(b) for s, b in universe.items()}
        result = train(bars if len(bars) > 1 else next(iter(bars.values())), fold_cfg,
                       data_info, workdir=workdir)  # fmt: skip
        save_artifact(result.artifact, save_to)
    return result.y_test, result.outputs_test


def _writable(bars: pd.DataFrame) -> pd.DataFrame:
    out = bars.copy(deep=True)  # Ray's object store hands out read-only views
    out.attrs = dict(bars.attrs)
    return out


def _train_folds(
    universe: dict[str, pd.DataFrame],
    fold_cfgs: list[Config],
    data_info: dict[str, Any],
    workdir: str | Path | None,
    tmp: Path,
    workers: int,
    executor: str,
) -> list[_FoldTrained]:
    """Every fold at once on ``workers`` processes (``walkforward.workers``), the bars shipped
    once; each fold is the same call of the one training path with the same seed, so the
    models and the stitched predictions equal the serial run's."""
    import os

    from kerastrader.sweeps.executors import make_executor

    cpus = max(1, (os.cpu_count() or 1) // workers)
    log.info("walk-forward: %d folds on %d %s workers of %d CPU(s)", len(fold_cfgs), workers,
             executor, cpus)  # fmt: skip
    ids: dict[int, int] = {}
    out: dict[int, _FoldTrained] = {}
    with make_executor(executor, max_parallel=workers, cpus_per_task=cpus) as pool:
        shared = pool.share("universe", universe)
        for k, fold_cfg in enumerate(fold_cfgs):
            fold_dir = str(Path(workdir) / f"fold_{k:03d}") if workdir else None
            tid = pool.submit(train_fold_task, shared, fold_cfg, data_info, fold_dir,
                              str(tmp / f"fold_{k:03d}"))  # fmt: skip
            ids[tid] = k
        for result in pool.as_completed():
            k = ids[result.task_id]
            if result.error is not None:
                raise result.error
            if result.crashed:
                raise RuntimeError(f"walk-forward fold {k}: {result.crashed}")
            y_test, outputs = result.value
            out[k] = _FoldTrained(load_artifact(tmp / f"fold_{k:03d}"), y_test, outputs)
    return [out[k] for k in range(len(fold_cfgs))]


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    keys = (
        ("mse", "mae", "directional_accuracy", "ic_spearman")
        if m.get("task") == "regression"
        else ("accuracy", "balanced_accuracy", "roc_auc", "log_loss")
    )
    return {k: m.get(k) for k in keys}


def load_walk_forward(path: str | Path) -> WalkForwardModel:
    path = Path(path)
    meta_file = path / SCHEDULE_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelMismatchError(f"{meta_file}: not valid JSON ({exc})") from None
    folds = []
    for entry in meta.get("folds", []):
        folds.append(Fold(pd.Timestamp(entry["start"]), load_artifact(path / entry["dir"]), entry))
    if not folds:
        raise ModelMismatchError(f"{meta_file}: no folds")
    return WalkForwardModel(folds, meta, path)


def load_model(path: str | Path) -> Artifact | WalkForwardModel:
    """An artifact directory or a walk-forward directory, whichever ``path`` holds."""
    path = Path(path)
    if (path / SCHEDULE_FILE).is_file():
        return load_walk_forward(path)
    return load_artifact(path)

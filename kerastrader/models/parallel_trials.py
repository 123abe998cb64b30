"""Random-search trials at once, on a process pool or Ray, with the serial search's numbers.

The random oracle draws every trial from its own seeded random state without looking at any
score, so the trials of a serial search are known before any is trained: they are drawn here
from the same oracle (the same tuner, built as the serial search builds it), trained as
independent tasks, and scored as keras-tuner scores them: the best epoch's objective. Each
trial starts from ``seed + trial number`` (the serial search does the same), then clears the
Keras session and builds the model, as keras-tuner does before every trial.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from kerastrader.errors import ConfigError

log = logging.getLogger(__name__)


def train_trial_task(
    build: Callable[[dict[str, Any]], Any],
    values: dict[str, Any],
    seed: int,
    deterministic: bool,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
    fit: dict[str, Any],
    objective: str,
    direction: str,
) -> float | None:
    """Train one trial (in a worker) and return its score: the best epoch's ``objective``,
    None when no epoch produced a finite value."""
    import keras
    import keras_tuner as kt
    import tensorflow as tf

    from kerastrader.sweeps.executors import captured_output

    with captured_output(None):
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(seed)
        keras.backend.clear_session()
        try:
            model = build(values)
        except kt.errors.FailedTrialError:  # the builder rejects this combination on purpose
            return None
        x_train, y_train, x_val, y_val, weights = data
        kwargs = dict(fit)
        if weights is not None:
            kwargs["sample_weight"] = weights
        early = keras.callbacks.EarlyStopping(
            monitor=objective, mode=direction, patience=kwargs.pop("patience")
        )
        history = model.fit(
            x_train, y_train, validation_data=(x_val, y_val), callbacks=[early], **kwargs
        )
    values_seen = np.asarray(history.history.get(objective, []), dtype=float)
    finite = values_seen[np.isfinite(values_seen)]
    if not len(finite):
        return None
    return float(finite.min() if direction == "min" else finite.max())


def parallel_random_search(
    tuner: Any,
    parsed: dict[str, dict[str, Any]],
    build: Callable[[dict[str, Any]], Any],
    objective: str,
    direction: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    seed: int,
    sample_weight: np.ndarray | None,
    max_trials: int,
    workers: int,
    executor: str,
    algorithm: str,
):
    """The serial random search's trials, trained ``workers`` at a time; a TuningResult."""
    import pickle

    from kerastrader.models.tuning import best_of, real_values, trial_seed
    from kerastrader.sweeps.executors import make_executor

    try:
        pickle.dumps(build)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same
        raise ConfigError(f"parallel tuning needs a picklable model builder ({exc})") from None
    trials = []
    with contextlib.redirect_stdout(io.StringIO()):  # the oracle's display prints each draw
        for i in range(max_trials):
            trial = tuner.oracle.create_trial(f"parallel-{i}")
            if trial.status != "RUNNING":
                break  # a small discrete space ran out of new combinations
            trials.append(trial)
    values = [real_values(parsed, t.hyperparameters.values) for t in trials]
    cpus = max(1, (os.cpu_count() or 1) // workers)
    log.info(
        "tuning random over %s: %d trials, %d at a time (%s, %d CPU(s) each)",
        ", ".join(parsed),
        len(trials),
        workers,
        executor,
        cpus,
    )
    fit = {
        "epochs": epochs,
        "batch_size": batch_size,
        "shuffle": False,
        "verbose": 0,
        "patience": patience,
    }
    from tensorflow.python.framework import config as tf_config  # the public API has no getter

    deterministic = bool(tf_config.is_op_determinism_enabled())
    t0 = time.monotonic()
    scores: dict[int, float | None] = {}
    with make_executor(executor, max_parallel=workers, cpus_per_task=cpus) as pool:
        data = pool.share("tuning-data", (x_train, y_train, x_val, y_val, sample_weight))
        ids = {}
        for k, (trial, vals) in enumerate(zip(trials, values, strict=True)):
            tid = pool.submit(
                train_trial_task,
                build,
                vals,
                trial_seed(seed, trial.trial_id),
                deterministic,
                data,
                fit,
                objective,
                direction,
            )
            ids[tid] = k
        for result in pool.as_completed():
            k = ids[result.task_id]
            if result.error is not None:
                result.error.add_note(f"raised by the trial with hyperparameters {values[k]}")
                raise result.error
            if result.crashed:
                raise RuntimeError(f"tuning trial {values[k]}: {result.crashed}")
            scores[k] = result.value
            shown = "no score (NaN)" if result.value is None else f"{result.value:.5f}"
            log.info(
                "trial %d/%d: %s -> %s %s", len(scores), len(trials), values[k], objective, shown
            )
    rows = [{"hyperparameters": values[k], "score": scores[k]} for k in range(len(trials))]
    return best_of(algorithm, objective, rows, direction, t0)

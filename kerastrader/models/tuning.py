"""Hyperparameter search with keras-tuner over a search space declared in the TOML config.

Every trial is scored on a validation period that the caller guarantees lies strictly after the
training period and strictly before the test period, so the test period never influences which
hyperparameters win. Samples are time-ordered windows: no fit ever shuffles them
(``shuffle=False``), and early stopping watches the validation objective, never the test period.

The space is declared per key, as read from TOML::

    [tuning]
    space = { learning_rate = { min = 1e-4, max = 1e-2, log = true },
              dropout = { min = 0.0, max = 0.4, step = 0.1 },
              units = { choices = [[16], [32, 16]] },
              kind = { choices = ["lstm", "gru"] } }

keras-tuner is a means, not the interface: callers give a ``build(values)`` function that gets
plain Python values for every key, and get back plain, JSON-serialisable values. keras-tuner's
own stdout chatter is silenced (one ``logging`` line per trial replaces it), and an exception
raised inside a trial (by the caller's builder, by ``fit``) stops the search with that
exception, where keras-tuner on its own would record the trial as failed and carry on.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.engine.metrics_tracking import infer_metric_direction
from keras_tuner.engine.trial import Trial

from kerastrader.errors import ConfigError

log = logging.getLogger(__name__)

ALGORITHMS = ("random", "hyperband", "bayesian")

_RANGE_FIELDS = ("min", "max", "step", "log")
_SCALARS = (bool, int, float, str)
# Hyperband's reduction factor: with factor 3, a third of the models of one round go on to the
# next round with three times the epochs. Small, so that short epoch budgets still give rounds.
_HYPERBAND_FACTOR = 3
# Only a NaN objective (a diverging trial) fails a trial here, because builder and fit errors
# end the search. A run of diverging learning rates is an answer about the space, not a reason
# to abort, so keras-tuner's "3 consecutive failures" limit is lifted.
_MAX_CONSECUTIVE_FAILURES = 1_000_000


# --------------------------------------------------------------------------------------------
# The declared space


def _where(key: str) -> str:
    return f"tuning.space.{key}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_choice_value(where: str, value: Any) -> None:
    """Choices end up in JSON (results, metadata), so only JSON-like values are accepted."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: choice {value!r} is not a finite number")
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, list):
        for item in value:
            _check_choice_value(where, item)
        return
    raise ConfigError(
        f"{where}: choice {value!r} is not a number, string, boolean or a list of them"
    )


def _parse_choices(where: str, spec: dict[str, Any]) -> dict[str, Any]:
    others = sorted(k for k in spec if k != "choices")
    if others:
        raise ConfigError(f"{where}: choices cannot be combined with {', '.join(others)}")
    values = spec["choices"]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: choices must be a non-empty list")
    seen: set[str] = set()
    for value in values:
        _check_choice_value(where, value)
        # json.dumps tells 1, 1.0 and true apart, which Python's == does not.
        fingerprint = json.dumps(value)
        if fingerprint in seen:
            raise ConfigError(f"{where}: choice {value!r} is listed twice")
        seen.add(fingerprint)
    return {"type": "choice", "values": copy.deepcopy(values)}


def _parse_range(where: str, spec: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(k for k in spec if k not in _RANGE_FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)} "
            "(expected choices, or min, max and optionally step and log)"
        )
    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"{where}: needs both min and max (or choices)")
    low, high, step, use_log = spec["min"], spec["max"], spec.get("step"), spec.get("log", False)
    for name, value in (("min", low), ("max", high), ("step", step)):
        if value is None and name == "step":
            continue
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
    if low >= high:
        raise ConfigError(f"{where}: min must be below max")
    if not isinstance(use_log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {use_log!r}")
    if use_log and low <= 0:
        raise ConfigError(f"{where}: log = true needs min > 0")
    if step is not None:
        if step <= 0:
            raise ConfigError(f"{where}: step must be positive")
        # keras-tuner's rule: with log sampling the step multiplies instead of adding.
        if use_log and step <= 1:
            raise ConfigError(f"{where}: with log = true, step is a factor and must be above 1")
    is_int = all(isinstance(v, int) for v in (low, high)) and (
        step is None or isinstance(step, int)
    )
    return {
        "type": "int" if is_int else "float",
        "min": low,
        "max": high,
        "step": step,
        "log": use_log,
    }


def parse_space(
    space: dict[str, Any], allowed: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Validate a declared search space and return it normalised.

    The space comes straight from a user's TOML file, so every mistake is reported as a
    ``ConfigError`` naming the offending key (``tuning.space.dropout: min must be below max``)
    before any model is trained. ``allowed`` lists the keys the caller's builder understands; a
    key outside it would otherwise be searched over and silently ignored.

    Each entry of the result is either ``{"type": "choice", "values": [...]}`` or
    ``{"type": "int" | "float", "min", "max", "step", "log"}``. A range is an integer range when
    min, max and step (if given) are all integers, so ``{min = 8, max = 64}`` searches whole
    numbers and ``{min = 0.0, max = 0.4}`` real ones. With ``log = true`` values are sampled on a
    log scale and a ``step`` is a multiplying factor (keras-tuner's convention).
    """
    if not isinstance(space, dict):
        raise ConfigError(
            f"tuning.space: expected a table of hyperparameters, got {type(space).__name__}"
        )
    if not space:
        raise ConfigError("tuning.space: declares no hyperparameters")
    allowed_keys = None if allowed is None else set(allowed)
    parsed: dict[str, dict[str, Any]] = {}
    for key, spec in space.items():
        where = _where(key)
        if allowed_keys is not None and key not in allowed_keys:
            raise ConfigError(
                f"{where}: not a tunable setting (tunable: {', '.join(sorted(allowed_keys))})"
            )
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{where}: expected a table like {{ choices = [...] }} or "
                f"{{ min = ..., max = ... }}, got {spec!r}"
            )
        parsed[key] = (
            _parse_choices(where, spec) if "choices" in spec else _parse_range(where, spec)
        )
    return parsed


def _native_choice(values: list[Any]) -> bool:
    """keras-tuner's Choice takes scalars of one type only; anything else is searched by index."""
    return all(isinstance(v, _SCALARS) for v in values) and len({type(v) for v in values}) == 1


def _declare(hp: kt.HyperParameters, name: str, spec: dict[str, Any]) -> Any:
    """Declare one key on ``hp`` and return keras-tuner's raw value for the current trial."""
    if spec["type"] == "choice":
        values = spec["values"]
        if _native_choice(values):
            return hp.Choice(name, values)
        return hp.Choice(name, list(range(len(values))))
    sampling = "log" if spec["log"] else "linear"
    if spec["type"] == "int":
        return hp.Int(name, spec["min"], spec["max"], step=spec["step"], sampling=sampling)
    return hp.Float(name, spec["min"], spec["max"], step=spec["step"], sampling=sampling)


def _real(spec: dict[str, Any], raw: Any) -> Any:
    """The user's value for keras-tuner's raw one: index choices map back, numpy becomes Python."""
    if isinstance(raw, np.generic):
        raw = raw.item()
    if raw is None:
        return None
    if spec["type"] == "choice":
        if _native_choice(spec["values"]):
            return raw
        # A copy, so a builder that mutates its list cannot change the space.
        return copy.deepcopy(spec["values"][int(raw)])
    if spec["type"] == "int":
        return int(raw)
    return float(raw)


def real_values(parsed: dict[str, dict[str, Any]], raw: dict[str, Any]) -> dict[str, Any]:
    """The space's keys only: Hyperband adds bookkeeping entries ("tuner/epochs", ...)."""
    return {name: _real(spec, raw.get(name)) for name, spec in parsed.items()}


# --------------------------------------------------------------------------------------------
# keras-tuner glue


class _TrialCrashed(kt.errors.FatalError):
    """Carries an exception raised inside a trial through keras-tuner, which would otherwise
    swallow it (printing a traceback, since its DEBUG flag ships on), mark the trial failed and go
    on, so that a bug in the builder would end as a search where every trial "failed"."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _SpaceHyperModel(kt.HyperModel):
    """Turns keras-tuner's ``hp`` into the concrete values dict the caller's builder takes."""

    def __init__(
        self, build: Callable[[dict[str, Any]], keras.Model], parsed: dict[str, dict[str, Any]]
    ) -> None:
        # Not ``self._build``: keras-tuner's HyperModel keeps its own wrapped build there.
        super().__init__(name="kerastrader")
        self._model_builder = build
        self._parsed = parsed
        # keras-tuner calls build() once while constructing the tuner, only to discover the
        # space. Declaring is enough then; building (and initialising) a real model is not.
        self.declaring = True

    def build(self, hp: kt.HyperParameters) -> keras.Model | None:
        raw = {name: _declare(hp, name, spec) for name, spec in self._parsed.items()}
        if self.declaring:
            return None
        values = real_values(self._parsed, raw)
        try:
            return self._model_builder(values)
        except Exception as error:
            error.add_note(f"raised by the model builder for hyperparameters {values}")
            raise


class _ReportingTuner:
    """Mixin for the keras-tuner tuners: fail loudly and report each trial.

    keras-tuner's own per-trial display prints to stdout and is switched off (``verbose=0``);
    ``on_trial_end`` is where the trial's score is known, after the oracle has scored it, so the
    ``report`` hook runs there.
    """

    report: Callable[[Trial], None] | None = None
    # Each trial starts from seed + its number, not from wherever the previous trial left the
    # random state: trials then do not depend on each other, and running them in parallel
    # (search(workers=...)) gives the serial run's numbers.
    trial_seed: int | None = None

    def run_trial(self, trial: Trial, *args: Any, **kwargs: Any) -> Any:
        if self.trial_seed is not None:
            keras.utils.set_random_seed(trial_seed(self.trial_seed, trial.trial_id))
        try:
            return super().run_trial(trial, *args, **kwargs)  # type: ignore[misc]
        except (kt.errors.FatalError, kt.errors.FailedTrialError):
            # Fatal ones end the search anyway; FailedTrialError is keras-tuner's protocol for
            # a builder that rejects a combination on purpose: that trial fails, the search goes on.
            raise
        except Exception as error:
            raise _TrialCrashed(error) from error

    def on_trial_end(self, trial: Trial) -> None:
        super().on_trial_end(trial)  # type: ignore[misc]
        if self.report is not None:
            self.report(self.oracle.get_trial(trial.trial_id))  # type: ignore[attr-defined]


class _RandomSearch(_ReportingTuner, kt.RandomSearch):
    pass


class _Hyperband(_ReportingTuner, kt.Hyperband):
    pass


class _BayesianOptimization(_ReportingTuner, kt.BayesianOptimization):
    pass


def _make_tuner(
    algorithm: str,
    hypermodel: _SpaceHyperModel,
    objective: kt.Objective,
    *,
    max_trials: int,
    epochs: int,
    seed: int,
    directory: str | Path,
) -> kt.Tuner:
    common: dict[str, Any] = {
        "hypermodel": hypermodel,
        "objective": objective,
        "seed": seed,
        "directory": str(directory),
        "project_name": "search",
        "overwrite": True,
        "max_consecutive_failed_trials": _MAX_CONSECUTIVE_FAILURES,
    }
    if algorithm == "random":
        return _RandomSearch(max_trials=max_trials, **common)
    if algorithm == "hyperband":
        return _Hyperband(max_epochs=epochs, factor=_HYPERBAND_FACTOR, **common)
    return _BayesianOptimization(max_trials=max_trials, **common)


def _objective(name: str) -> kt.Objective:
    """The objective with its direction; only validation metrics, never a training one."""
    if not isinstance(name, str) or not name.startswith("val_"):
        raise ConfigError(
            f"tuning.objective = {name!r}: must be a validation metric (val_...), because "
            "scoring trials on the training data rewards overfitting"
        )
    direction = infer_metric_direction(name)
    if direction is None:
        raise ConfigError(
            f"tuning.objective = {name!r}: unknown metric, cannot tell whether higher or lower "
            "is better (use e.g. val_loss or val_auc)"
        )
    return kt.Objective(name, direction=direction)


def _score(trial: Trial) -> float | None:
    """The trial's objective, or None when it has none (failed, or diverged to NaN)."""
    score = trial.score
    if score is None:
        return None
    score = float(score)
    return score if math.isfinite(score) else None


def trial_seed(seed: int, trial_id: str) -> int:
    try:
        return seed + int(trial_id)
    except ValueError:
        return seed


# --------------------------------------------------------------------------------------------
# The search


@dataclass
class TuningResult:
    """What a search found, in plain values, ready for JSON (run metadata, reports).

    ``score`` is the best trial's objective value: for ``val_loss`` lower is better,
    ``direction`` says which way ("min" or "max"). ``trials`` holds every trial in the order it
    was run as ``{"hyperparameters": {...}, "score": float | None}``; a None score is a trial
    that produced no usable objective (it diverged to NaN).
    """

    algorithm: str
    objective: str
    best: dict[str, Any]
    score: float
    trials: list[dict[str, Any]]
    direction: str = "min"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (``json.dumps(result.to_dict())`` works as is)."""
        return asdict(self)


def best_of(
    algorithm: str, objective: str, rows: list[dict[str, Any]], direction: str, started: float
) -> TuningResult:
    """The search's result from its trials' rows (``hyperparameters``, ``score``: None or
    not finite for a trial without a usable objective), whichever way they were trained
    (keras-tuner serially, or trials in parallel workers); ``started`` is the search's
    ``time.monotonic()`` start, for the log line."""
    scored = [r for r in rows if r["score"] is not None and math.isfinite(r["score"])]
    if not scored:
        raise ConfigError(
            f"tuning: none of the {len(rows)} trials produced a usable {objective} "
            "(each diverged to NaN or was rejected by the builder); narrow tuning.space"
        )
    pick = min if direction == "min" else max
    best = pick(scored, key=lambda row: row["score"])
    log.info(
        "tuning done in %.1f s: best %s %.5f with %s",
        time.monotonic() - started,
        objective,
        best["score"],
        best["hyperparameters"],
    )
    return TuningResult(
        algorithm=algorithm,
        objective=objective,
        best=copy.deepcopy(best["hyperparameters"]),
        score=best["score"],
        trials=rows,
        direction=direction,
    )


def search(
    build: Callable[[dict[str, Any]], keras.Model],
    space: dict[str, Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    algorithm: str = "random",
    max_trials: int = 10,
    epochs: int = 10,
    batch_size: int = 64,
    seed: int = 42,
    directory: str | Path,
    sample_weight: np.ndarray | None = None,
    objective: str = "val_loss",
    patience: int = 3,
    allowed: Iterable[str] | None = None,
    progress: bool = False,
    workers: int = 1,
    executor: str = "local",
) -> TuningResult:
    """Search ``space`` for the hyperparameters that score best on the validation period.

    ``build`` gets a dict with a concrete value for every key of ``space`` (a list of units
    comes as the list, not as an index) and returns a compiled model. Each trial trains on
    ``x_train``/``y_train`` for at most ``epochs`` epochs without shuffling (samples are ordered
    in time), stops early after ``patience`` epochs without improvement of ``objective`` on
    ``x_val``/``y_val``, and is scored by the best epoch's ``objective``. The caller guarantees
    the validation period lies after training and before test; the test period is never seen.

    ``algorithm`` is one of ``ALGORITHMS``: "random" and "bayesian" run ``max_trials`` trials
    (fewer if a small discrete space runs out of new combinations); "hyperband" ignores
    ``max_trials`` and decides the number of trials itself from ``epochs`` (its max_epochs) and
    a reduction factor of 3, training many models briefly and the promising ones longer.

    ``directory`` is keras-tuner's working directory (trial files and checkpoints); an earlier
    search there is overwritten, never resumed, so results depend on the arguments only. The
    same ``seed`` gives the same trials and the same best hyperparameters.

    Each finished trial is logged (``logging``, INFO); ``progress=True`` also shows a progress
    bar over trials on stderr. An exception raised inside a trial (by ``build``, by training)
    ends the search with that exception, instead of keras-tuner's default of recording a failed
    trial and carrying on; ``build`` may raise ``keras_tuner.errors.FailedTrialError`` to reject
    one combination on purpose. A trial whose objective is NaN gets score None.

    ``workers > 1`` runs random-search trials at once on ``executor`` ("local": a process
    pool; "ray"), each with CPUs / workers threads; ``build`` must then be picklable (a
    module-level function or object). The trials are the ones the serial search draws (the
    oracle draws them without looking at scores) and each starts from the same seed, so the
    scores and the best hyperparameters equal the serial run's. Hyperband and Bayesian
    optimisation choose each trial from the scores before it, so they run serially.
    """
    if algorithm not in ALGORITHMS:
        raise ConfigError(
            f"tuning.algorithm = {algorithm!r}: unknown (choose one of {', '.join(ALGORITHMS)})"
        )
    for name, value, least in (
        ("max_trials", max_trials, 1),
        ("epochs", epochs, 1),
        ("batch_size", batch_size, 1),
        ("patience", patience, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"tuning.{name} = {value!r}: must be an integer >= {least}")
    if len(x_val) == 0:
        raise ConfigError("tuning needs a non-empty validation period to score trials on")
    parsed = parse_space(space, allowed)
    target = _objective(objective)

    keras.utils.set_random_seed(seed)
    hypermodel = _SpaceHyperModel(build, parsed)
    tuner = _make_tuner(
        algorithm,
        hypermodel,
        target,
        max_trials=max_trials,
        epochs=epochs,
        seed=seed,
        directory=directory,
    )
    hypermodel.declaring = False
    tuner.trial_seed = seed
    if workers > 1 and algorithm == "random":
        from kerastrader.models.parallel_trials import parallel_random_search

        return parallel_random_search(
            tuner, parsed, build, objective, target.direction, x_train, y_train, x_val, y_val,
            epochs=epochs, batch_size=batch_size, patience=patience, seed=seed,
            sample_weight=sample_weight, max_trials=max_trials, workers=workers,
            executor=executor, algorithm=algorithm,
        )  # fmt: skip
    if workers > 1:
        log.info("tuning %s: each trial depends on the scores before it; trials run serially",
                 algorithm)  # fmt: skip

    total = None if algorithm == "hyperband" else max_trials
    log.info(
        "tuning %s over %s: %s trials of up to %d epochs, scored by %s",
        algorithm,
        ", ".join(parsed),
        "hyperband-chosen number of" if total is None else total,
        epochs,
        objective,
    )

    bar = None
    task = None
    if progress:
        from kerastrader.models.progress import make_progress

        bar = make_progress()
        task = bar.add_task(f"tuning ({algorithm})", total=total, info="")
    started = time.monotonic()
    finished = 0
    best_so_far: float | None = None

    def report(trial: Trial) -> None:
        nonlocal finished, best_so_far
        finished += 1
        values = real_values(parsed, trial.hyperparameters.values)
        score = _score(trial)
        shown = "no score (NaN)" if score is None else f"{score:.5f}"
        of = "" if total is None else f"/{total}"
        log.info("trial %d%s: %s -> %s %s", finished, of, values, objective, shown)
        if score is not None and (
            best_so_far is None
            or (score < best_so_far if target.direction == "min" else score > best_so_far)
        ):
            best_so_far = score
        if bar is not None and best_so_far is not None:
            bar.update(task, advance=1, info=f"best {objective}={best_so_far:.5f}")
        elif bar is not None:
            bar.update(task, advance=1)

    tuner.report = report
    fit_kwargs: dict[str, Any] = {
        "validation_data": (x_val, y_val),
        "epochs": epochs,
        "batch_size": batch_size,
        "shuffle": False,  # samples are ordered in time; never mix them
        "verbose": 0,  # also switches off keras-tuner's own per-trial printing
        "callbacks": [
            keras.callbacks.EarlyStopping(
                monitor=objective, mode=target.direction, patience=patience
            )
        ],
    }
    if sample_weight is not None:
        fit_kwargs["sample_weight"] = sample_weight

    failure: BaseException | None = None
    if bar is not None:
        bar.start()
    try:
        with warnings.catch_warnings():
            # numpy's notice when keras-tuner scores a trial whose objective is all NaN; the
            # trial's log line already says "no score (NaN)".
            warnings.filterwarnings("ignore", message="All-NaN", category=RuntimeWarning)
            tuner.search(x_train, y_train, **fit_kwargs)
    except _TrialCrashed as crash:
        failure = crash.original
    finally:
        if bar is not None:
            bar.stop()
    if failure is not None:
        raise failure

    trials = list(tuner.oracle.trials.values())
    rows = [
        {"hyperparameters": real_values(parsed, t.hyperparameters.values), "score": _score(t)}
        for t in trials
    ]
    return best_of(algorithm, objective, rows, target.direction, started)

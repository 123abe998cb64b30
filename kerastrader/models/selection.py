"""Feature selection on the training period only: Boruta or purged permutation importance.

Selecting features is part of fitting: a choice made while looking at the validation or test
period leaks those periods into the model just as a scaler fitted on them would. So the caller
hands in the training rows only, in chronological order, and nothing here shuffles rows across
time except the permutations themselves (which shuffle one column to break its link with the
target, and are the point of both methods).

Two methods:

``boruta``
    :class:`boruta.BorutaPy` around a shallow random forest. Every feature competes against
    shuffled copies of all features ("shadows"); a feature is confirmed when it beats the best
    shadow reliably more often than chance over the iterations. Scores are Boruta's ranking
    (1 = confirmed, 2 = tentative, higher = rejected, best first).

``permutation``
    A random forest fitted on the first ~80% of the training rows, then
    :func:`sklearn.inspection.permutation_importance` on the last ~20%, with ``horizon`` rows
    dropped in between (a purge: the labels of the rows just before the holdout look ``horizon``
    bars ahead, into the holdout's own label window). A feature is kept when its mean importance
    minus two standard deviations is above zero, i.e. shuffling it hurts the out-of-sample score
    by more than the noise of the shuffling. Scores are the mean importances.

Both honour ``min_features`` (never return fewer: top up with the best-ranked features and say so
in a warning) and ``max_features`` (keep only the best-ranked), and both return the selected
names in the original order of ``names`` so the feature matrix keeps its column order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kerastrader.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("boruta", "permutation")
TASKS = ("classification", "regression")
MIN_ROWS = 50  # below this neither method can tell signal from noise
HOLDOUT_FRACTION = 0.2  # permutation: the last fifth of the training rows is scored
MIN_FIT_ROWS = 20  # permutation: the forest needs something to learn from
MIN_HOLDOUT_ROWS = 10  # permutation: a score on fewer rows is mostly noise
FOREST_DEPTH = 5  # shallow trees: fast, and less prone to memorising noise features
PERMUTATION_TREES = 200
PERMUTATION_REPEATS = 10
# Keep a feature when mean importance - KEEP_ABOVE_STDS * std > 0. The std is the spread over
# the shuffles of one fitted forest on one holdout, not over samples, so it understates the
# noise: on 1,000 generated rows, one std lets a pure-noise feature through about one time in
# five; two stds about one in thirty (at a small cost in recall on weak signals).
KEEP_ABOVE_STDS = 2.0
BORUTA_MAX_ITER = 50  # seconds, not minutes, on a few thousand rows
N_JOBS = 2


@dataclass
class SelectionResult:
    """What a selection chose, and why, in a form the model artifact's metadata can store.

    ``selected`` keeps the original order of the names (the feature matrix's column order).
    ``scores`` is per feature: Boruta's ranking (1 = confirmed, lower is better) or the mean
    permutation importance (higher is better). ``details`` holds JSON-serialisable extras: the
    confirmed/tentative/rejected lists, importance spreads, rows used, whether a fallback kicked
    in.
    """

    method: str
    selected: list[str]
    scores: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only, so ``json.dumps`` works on it as is."""
        return _jsonable(asdict(self))


def select_features(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    method: str,
    *,
    task: str = "classification",
    seed: int = 42,
    min_features: int = 1,
    max_features: int = 0,
    horizon: int = 1,
) -> SelectionResult:
    """Choose features on the training rows ``x``/``y`` (chronological, training period only).

    ``x`` is (rows, features), ``y`` is (rows,): integer classes for ``task="classification"``,
    floats for ``task="regression"``. Rows with a NaN in ``x`` or ``y`` (the features' warm-up,
    the label's last ``horizon`` bars) are dropped first. ``horizon`` is the label horizon in bars
    and is the purge gap before the permutation holdout. ``max_features=0`` means no cap.

    Raises :class:`~kerastrader.errors.ConfigError` for an unknown method or task, names that do
    not match the columns, fewer than 50 usable rows, or impossible min/max feature counts.
    The result is the same for the same inputs and ``seed``.
    """
    names = [str(n) for n in names]
    x, y = _validate(x, y, names, method, task, min_features, max_features, horizon)
    n_before = len(x)
    keep = ~np.isnan(x).any(axis=1) & ~np.isnan(y)
    x, y = x[keep], y[keep]
    n_rows = len(x)
    if n_rows < MIN_ROWS:
        raise ConfigError(
            f"feature selection needs at least {MIN_ROWS} training rows without NaN; "
            f"got {n_rows} of {n_before} (the rest have a NaN feature or label)"
        )
    if task == "classification":
        y = _as_classes(y)

    log.info(
        "selecting features by %s on %d training rows (%d NaN rows dropped), %d candidates",
        method,
        n_rows,
        n_before - n_rows,
        len(names),
    )
    if method == "boruta":
        scores, order, chosen, details = _boruta(x, y, names, task, seed)
        fallback_pool = "tentative, then by Boruta ranking"
    else:
        scores, order, chosen, details = _permutation(x, y, names, task, seed, horizon)
        fallback_pool = "by mean permutation importance"

    picked, fallback = _apply_bounds(chosen, order, min_features, max_features)
    if fallback:
        log.warning(
            "%s selected %d feature(s), fewer than min_features=%d; added the best-ranked "
            "ones (%s) to reach %d: %s",
            method,
            len(chosen),
            min_features,
            fallback_pool,
            min_features,
            ", ".join(names[i] for i in picked if i not in chosen),
        )
    capped = max_features > 0 and len(chosen) > max_features
    if capped:
        log.info(
            "%s selected %d features; kept the best %d (max_features)",
            method,
            len(chosen),
            max_features,
        )
    selected = [names[i] for i in sorted(picked)]
    details.update(
        rows_used=n_rows,
        rows_dropped_nan=n_before - n_rows,
        seed=seed,
        task=task,
        min_features=min_features,
        max_features=max_features,
        n_chosen_by_method=len(chosen),
        fallback_used=fallback,
        capped=capped,
        ranked=[names[i] for i in order],
    )
    log.info("selected %d of %d features: %s", len(selected), len(names), ", ".join(selected))
    return SelectionResult(method=method, selected=selected, scores=scores, details=details)


# --- the two methods ------------------------------------------------------------------------
# Each returns (scores by name, all feature indices best first, indices the method chose,
# details). The chosen indices are already in best-first order, so the bounds can cut them.


def _boruta(
    x: np.ndarray, y: np.ndarray, names: list[str], task: str, seed: int
) -> tuple[dict[str, float], list[int], list[int], dict[str, Any]]:
    from boruta import BorutaPy

    selector = BorutaPy(
        _forest(task, seed, n_estimators=100),
        n_estimators="auto",
        max_iter=BORUTA_MAX_ITER,
        random_state=seed,
        verbose=0,
    )
    selector.fit(x, y)
    ranking = np.asarray(selector.ranking_, dtype=int)
    confirmed = np.asarray(selector.support_, dtype=bool)
    tentative = np.asarray(selector.support_weak_, dtype=bool) & ~confirmed
    # The median importance over Boruta's iterations breaks ties within a rank (all confirmed
    # features share rank 1, and max_features may have to choose among them).
    history = np.asarray(selector.importance_history_, dtype=float)[1:]
    median_importance = np.array(
        [np.nanmedian(col) if np.isfinite(col).any() else 0.0 for col in history.T]
    )
    order = sorted(range(len(names)), key=lambda i: (ranking[i], -median_importance[i], i))
    # The tentative ones come right after the confirmed in `order` (rank 2 < rejected ranks), so
    # the min_features top-up takes them first, then the best rejected.
    chosen = [i for i in order if confirmed[i]]
    details: dict[str, Any] = {
        "confirmed": [n for n, c in zip(names, confirmed, strict=True) if c],
        "tentative": [n for n, t in zip(names, tentative, strict=True) if t],
        # Boruta does not expose "still undecided at max_iter" apart from "rejected"; both land
        # here (undecided ones whose median importance did not beat the shadows).
        "rejected": [
            n for n, c, t in zip(names, confirmed, tentative, strict=True) if not (c or t)
        ],
        "median_importance": {n: float(v) for n, v in zip(names, median_importance, strict=True)},
        "iterations": int(len(history)),
        "max_iter": BORUTA_MAX_ITER,
    }
    scores = {n: float(r) for n, r in zip(names, ranking, strict=True)}
    return scores, order, chosen, details


def _permutation(
    x: np.ndarray, y: np.ndarray, names: list[str], task: str, seed: int, horizon: int
) -> tuple[dict[str, float], list[int], list[int], dict[str, Any]]:
    from sklearn.inspection import permutation_importance

    n = len(x)
    n_holdout = max(MIN_HOLDOUT_ROWS, math.ceil(n * HOLDOUT_FRACTION))
    n_fit = n - n_holdout - horizon
    if n_fit < MIN_FIT_ROWS:
        raise ConfigError(
            f"permutation selection: {n} usable rows leave {n_fit} to fit on after a holdout of "
            f"{n_holdout} and a purge of horizon={horizon}; it needs at least {MIN_FIT_ROWS}"
        )
    x_fit, y_fit = x[:n_fit], y[:n_fit]
    x_hold, y_hold = x[n - n_holdout :], y[n - n_holdout :]
    if task == "classification" and len(np.unique(y_fit)) < 2:
        raise ConfigError(
            "permutation selection: the first 80% of the training rows hold a single class; "
            "nothing to learn"
        )
    scoring = _scoring(task, y_fit, y_hold)
    model = _forest(task, seed, n_estimators=PERMUTATION_TREES)
    model.fit(x_fit, y_fit)
    # Scoring makes ~50 small predictions; fanning each out to worker threads costs more than it
    # saves (about 3x slower on 200 rows). The predictions, hence the importances, are the same.
    model.set_params(n_jobs=1)
    result = permutation_importance(
        model,
        x_hold,
        y_hold,
        scoring=scoring,
        n_repeats=PERMUTATION_REPEATS,
        random_state=seed,
    )
    mean = np.asarray(result.importances_mean, dtype=float)
    std = np.asarray(result.importances_std, dtype=float)
    order = sorted(range(len(names)), key=lambda i: (-mean[i], i))
    chosen = [i for i in order if mean[i] - KEEP_ABOVE_STDS * std[i] > 0.0]
    details: dict[str, Any] = {
        "scoring": scoring,
        "importance_std": {n: float(s) for n, s in zip(names, std, strict=True)},
        "rows_fit": n_fit,
        "rows_purged": horizon,
        "rows_holdout": n_holdout,
        "n_repeats": PERMUTATION_REPEATS,
        "rule": f"mean importance - {KEEP_ABOVE_STDS:g} std > 0",
    }
    scores = {n: float(m) for n, m in zip(names, mean, strict=True)}
    return scores, order, chosen, details


def _scoring(task: str, y_fit: np.ndarray, y_hold: np.ndarray) -> str:
    """The score whose drop measures a feature's worth on the holdout.

    ROC AUC for two classes (insensitive to the class balance, which drifts over time); log
    loss for more (it uses the whole predicted distribution, so it moves before accuracy does).
    Both need the holdout to make sense to them: AUC needs both classes, log loss needs no class
    the forest never saw. Otherwise accuracy, which always works.
    """
    if task == "regression":
        return "neg_mean_squared_error"
    fit_classes = set(np.unique(y_fit).tolist())
    hold_classes = set(np.unique(y_hold).tolist())
    if len(fit_classes) == 2 and hold_classes == fit_classes:
        return "roc_auc"
    if len(fit_classes) > 2 and hold_classes <= fit_classes:
        return "neg_log_loss"
    log.warning(
        "permutation selection: holdout classes %s do not suit AUC/log loss against the "
        "fitted classes %s; scoring by accuracy",
        sorted(hold_classes),
        sorted(fit_classes),
    )
    return "accuracy"


def _forest(task: str, seed: int, n_estimators: int) -> Any:
    """A shallow, seeded random forest: fast, deterministic, hard to impress with noise."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    if task == "classification":
        return RandomForestClassifier(
            n_estimators=n_estimators,
            max_depth=FOREST_DEPTH,
            class_weight="balanced",
            n_jobs=N_JOBS,
            random_state=seed,
        )
    return RandomForestRegressor(
        n_estimators=n_estimators,
        max_depth=FOREST_DEPTH,
        n_jobs=N_JOBS,
        random_state=seed,
    )


# --- helpers --------------------------------------------------------------------------------


def _apply_bounds(
    chosen: list[int], order: list[int], min_features: int, max_features: int
) -> tuple[list[int], bool]:
    """Top ``chosen`` up to ``min_features`` from ``order`` and cut it to ``max_features``.

    Both lists are best first. Returns the picked indices (best first) and whether the
    ``min_features`` top-up was needed.
    """
    picked = list(chosen)
    fallback = len(picked) < min_features
    for i in order:
        if len(picked) >= min_features:
            break
        if i not in picked:
            picked.append(i)
    if max_features > 0:
        picked = picked[:max_features]
    return picked, fallback


def _validate(
    x: Any,
    y: Any,
    names: list[str],
    method: str,
    task: str,
    min_features: int,
    max_features: int,
    horizon: int,
) -> tuple[np.ndarray, np.ndarray]:
    if method not in METHODS:
        raise ConfigError(
            f"unknown feature selection method {method!r}; expected one of {', '.join(METHODS)}"
        )
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    try:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"feature selection needs numeric x and y: {exc}") from exc
    if x.ndim != 2:
        raise ConfigError(f"feature selection needs x as (rows, features); got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ConfigError(
            f"feature selection needs y as (rows,) with one target per row of x ({len(x)}); "
            f"got shape {y.shape}"
        )
    n_features = x.shape[1]
    if len(names) != n_features:
        raise ConfigError(
            f"feature selection got {len(names)} names for {n_features} feature columns; "
            "the names must match the columns of x one to one"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"feature selection got duplicate names: {', '.join(duplicates)}")
    if min_features < 1:
        raise ConfigError(f"min_features must be at least 1; got {min_features}")
    if min_features > n_features:
        raise ConfigError(
            f"min_features={min_features} exceeds the {n_features} candidate features"
        )
    if max_features < 0:
        raise ConfigError(f"max_features must be 0 (no cap) or positive; got {max_features}")
    if max_features > 0 and max_features < min_features:
        raise ConfigError(
            f"max_features={max_features} is below min_features={min_features}; "
            "use max_features=0 for no cap"
        )
    if horizon < 0:
        raise ConfigError(f"horizon must be 0 or more bars; got {horizon}")
    return x, y


def _as_classes(y: np.ndarray) -> np.ndarray:
    """Integer class labels; a float target here is almost certainly the wrong task."""
    if not np.all(y == np.round(y)):
        raise ConfigError(
            "task='classification' needs integer class labels, but y has fractional values; "
            "use task='regression' for a continuous target"
        )
    classes = np.unique(y)
    if len(classes) < 2:
        raise ConfigError(
            f"task='classification' needs at least two classes in y; got only {classes.tolist()}"
        )
    return y.astype(np.int64)


def _jsonable(value: Any) -> Any:
    """Numpy scalars and arrays, tuples and non-finite floats turned into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; None says "no value" honestly
    return value

"""Cross-sectional allocation: one prediction per instrument in, one weight per instrument out.

Pure functions over arrays in the universe's order; an instrument without a prediction (NaN,
still warming up) gets no weight. ``gross`` is the total absolute weight to hand out.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from kerastrader.strategies.sizing import signal_strength

SCHEDULES = ("bar", "daily", "weekly", "monthly")


def top_k_weights(preds: np.ndarray, k: int, allow_short: bool, gross: float) -> np.ndarray:
    """Equal weights long in the ``k`` highest predictions (and short in the ``k`` lowest when
    ``allow_short``; then each side gets half of ``gross``). Ties keep the universe's order."""
    preds = np.asarray(preds, dtype=float)
    w = np.zeros(len(preds))
    valid = np.flatnonzero(np.isfinite(preds))
    if len(valid) == 0 or k < 1:
        return w
    order = valid[np.argsort(-preds[valid], kind="stable")]
    k = min(k, len(order) // 2 if allow_short else len(order))
    if k < 1:
        return w
    side = gross / 2 if allow_short else gross
    w[order[:k]] = side / k
    if allow_short:
        w[order[-k:]] = -side / k
    return w


def proportional_weights(
    preds: np.ndarray, center: float, allow_short: bool, gross: float
) -> np.ndarray:
    """Weights proportional to each prediction's distance from ``center``, scaled to ``gross``;
    long-only drops the instruments below ``center``."""
    preds = np.asarray(preds, dtype=float)
    raw = np.where(np.isfinite(preds), preds - center, 0.0)
    if not allow_short:
        raw = np.maximum(raw, 0.0)
    total = float(np.abs(raw).sum())
    if total == 0:
        return np.zeros(len(preds))
    return raw * (gross / total)


def strategic_weights(
    base: np.ndarray, preds: np.ndarray, center: float, scale: float, tilt: float
) -> np.ndarray:
    """Fixed strategic weights (such as 40/45/5/10) tilted by the model, keeping their sum.

    Each instrument's weight becomes ``base * (1 + tilt * s)`` with ``s`` its signal strength in
    [-1, 1]; the result is rescaled to the base weights' total, so the model moves money
    between instruments rather than in or out of the market. No prediction: no tilt.
    """
    base = np.asarray(base, dtype=float)
    s = np.array([signal_strength(p, center, scale) for p in np.asarray(preds, dtype=float)])
    tilted = np.maximum(base * (1.0 + tilt * s), 0.0)
    total = float(tilted.sum())
    if total == 0:
        return base.copy()
    return tilted * (float(base.sum()) / total)


def is_rebalance_bar(previous: dt.date | None, today: dt.date, schedule: str) -> bool:
    """Whether ``today`` starts a new rebalancing period after the last rebalance ``previous``.

    ``bar``: every bar; ``daily``: every new day; ``weekly``: the first bar of an ISO week;
    ``monthly``: the first bar of a calendar month. The first bar ever always rebalances.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}")
    if previous is None or schedule == "bar":
        return True
    if schedule == "daily":
        return today != previous
    if schedule == "weekly":
        return today.isocalendar()[:2] != previous.isocalendar()[:2]
    return (today.year, today.month) != (previous.year, previous.month)

"""Deciding, separate from executing: prediction + current side -> target side.

Pure functions, testable without Backtrader or a broker.
"""

from __future__ import annotations

import math

LONG, FLAT, SHORT = 1, 0, -1


def threshold_side(
    prediction: float, current: int, enter: float, exit: float, allow_short: bool = False
) -> int:
    """Target side for a prediction, with hysteresis between ``exit`` and ``enter``.

    Above ``enter``: long. Below ``exit``: flat, or short when ``allow_short``. In between, or
    with no prediction (NaN during warm-up): keep the current side, so that a prediction
    hovering around one level does not churn orders.
    """
    if prediction is None or math.isnan(prediction):
        return current
    if prediction > enter:
        return LONG
    if prediction < exit:
        return SHORT if allow_short else FLAT
    return current

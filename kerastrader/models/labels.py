"""Labels: what the model is trained to predict at bar t, from bars after t.

Labels are the only place where the future is allowed, and only as the target: the value for
bar t is learnt from features of bars up to t. The last bars, whose future is not in the data,
get no label (NaN) rather than a made-up one.
"""

from __future__ import annotations

import numpy as np

DIRECTION_DEFINITION = "1 when Close[t+1] > Close[t], else 0; no label for the last bar"


def direction_label(close: np.ndarray) -> np.ndarray:
    """Next-bar direction: ``label[t] = 1 if Close[t+1] > Close[t] else 0``; NaN for the last bar.

    Not ``close.pct_change(-1) > 0``, the widespread idiom: that is ``Close[t] > Close[t+1]``,
    a *down* label. An unchanged close counts as 0 (not up).
    """
    close = np.asarray(close, dtype=float)
    out = np.full(len(close), np.nan)
    out[:-1] = (close[1:] > close[:-1]).astype(float)
    return out


def forward_return(close: np.ndarray, horizon: int = 1) -> np.ndarray:
    """Forward n-bar simple return: ``Close[t+n] / Close[t] - 1``; NaN for the last n bars."""
    if horizon < 1:
        raise ValueError("horizon must be at least 1")
    close = np.asarray(close, dtype=float)
    out = np.full(len(close), np.nan)
    out[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return out

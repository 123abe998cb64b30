"""Windows of W consecutive feature rows, each ending at the bar it predicts for.

Keras' ``timeseries_dataset_from_array`` pairs the window that *starts* at row i with
``targets[i]``, an off-by-W-1 trap; here a window is always addressed by its last row t, and
its label is the label of t. A test checks this against Keras' own utility.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def window_ends(valid: np.ndarray, window: int) -> np.ndarray:
    """Rows t whose window t-W+1..t lies entirely in valid (non-NaN) feature rows."""
    valid = np.asarray(valid, dtype=bool)
    if len(valid) < window:
        return np.empty(0, dtype=int)
    full = sliding_window_view(valid, window).all(axis=1)
    return np.flatnonzero(full) + window - 1


def make_windows(features: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Stack the windows ending at rows ``ends``: shape (len(ends), W, n_features), float32.

    The result is a copy in float32 (the model's dtype), so later scaling cannot alias it.
    """
    features = np.asarray(features)
    ends = np.asarray(ends, dtype=int)
    if len(ends) and (ends.min() < window - 1 or ends.max() >= len(features)):
        raise IndexError("a window end lies outside the feature rows")
    # Cast once, then gather: half the memory traffic of gathering float64 and casting.
    rows = np.asarray(features, dtype=np.float32)
    view = sliding_window_view(rows, (window, rows.shape[1]))[:, 0]
    return view[ends - window + 1]

"""Windows end at the bar they predict for, as Keras' own utility does with targets[W-1:]."""

from __future__ import annotations

import keras
import numpy as np

from kerastrader.models.windows import make_windows, window_ends


def test_windows_match_keras_timeseries_dataset_with_shifted_targets():
    rng = np.random.default_rng(0)
    x, labels, w = rng.normal(size=(50, 3)), rng.integers(0, 2, 50), 7
    ds = keras.utils.timeseries_dataset_from_array(
        x, labels[w - 1 :], sequence_length=w, batch_size=100, shuffle=False
    )
    kx, ky = next(iter(ds))
    ends = np.arange(w - 1, 50)
    np.testing.assert_allclose(make_windows(x, ends, w), kx.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(labels[ends], ky.numpy())


def test_window_ending_at_t_holds_rows_t_minus_w_plus_1_to_t():
    x = np.arange(20, dtype=float).reshape(10, 2)
    win = make_windows(x, np.array([4]), 3)
    np.testing.assert_array_equal(win[0], x[2:5])


def test_window_ends_skip_windows_touching_nan_rows():
    valid = np.array([False, False, True, True, True, False, True, True, True, True])
    np.testing.assert_array_equal(window_ends(valid, 3), [4, 8, 9])

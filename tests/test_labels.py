"""The direction label is Close[t+1] > Close[t], pinned against the widespread inverted idiom."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kerastrader.models.labels import direction_label, forward_return


def test_direction_label_is_one_when_the_next_close_is_higher():
    close = np.array([10.0, 11.0, 10.5, 10.5, 12.0])
    np.testing.assert_array_equal(direction_label(close)[:-1], [1.0, 0.0, 0.0, 1.0])


def test_the_last_bar_has_no_label():
    assert np.isnan(direction_label(np.array([1.0, 2.0, 3.0]))[-1])


def test_pct_change_minus_one_idiom_is_the_opposite_label(orcl):
    close = orcl["close"]
    ours = direction_label(close.to_numpy())[:-1]
    idiom = (close.pct_change(-1) > 0).to_numpy()[:-1].astype(float)
    moved = (close.shift(-1) != close).to_numpy()[:-1]
    # The idiom computes Close[t] > Close[t+1]: wherever the price moved, it says the reverse.
    np.testing.assert_array_equal(ours[moved], 1.0 - idiom[moved])
    np.testing.assert_array_equal(ours, (close.shift(-1) > close).to_numpy()[:-1].astype(float))


def test_forward_return_over_n_bars():
    close = pd.Series([100.0, 110.0, 99.0, 121.0])
    out = forward_return(close.to_numpy(), horizon=2)
    assert out[0] == pytest.approx(99.0 / 100.0 - 1)
    assert out[1] == pytest.approx(121.0 / 110.0 - 1)
    assert np.isnan(out[2:]).all()

"""validate_bars on in-memory frames: the checks every source (CSV, Parquet, SQL, DataFrame) shares.

Without line numbers a row is its 0-based position; with them it is the source's line.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kerastrader.errors import DataError
from kerastrader.feeds.validate import validate_bars
from tests.conftest import random_walk_bars


def broken(row: int, **cells: float) -> pd.DataFrame:
    bars = random_walk_bars(30, seed=3)
    for col, value in cells.items():
        bars.iloc[row, bars.columns.get_loc(col)] = value
    return bars


def message(bars: pd.DataFrame, line_numbers: np.ndarray | None = None) -> str:
    with pytest.raises(DataError) as info:
        validate_bars(bars, "frame", line_numbers)
    return str(info.value)


def test_the_row_is_the_source_line_when_line_numbers_are_given():
    bars = broken(4, close=0.0)
    lines = np.arange(len(bars)) * 10 + 7  # e.g. a file with comments between the bars
    assert message(bars, lines) == "frame, row 47: close must be positive, got 0"


def test_nan_cell():
    assert (
        message(broken(9, volume=np.nan)) == "frame, row 9: volume is empty or not a finite number"
    )


def test_infinite_cell():
    assert message(broken(2, high=np.inf)) == "frame, row 2: high is empty or not a finite number"


def test_zero_price():
    assert message(broken(5, low=0.0)) == "frame, row 5: low must be positive, got 0"


def test_negative_price():
    assert message(broken(6, open=-1.5)) == "frame, row 6: open must be positive, got -1.5"


def test_negative_volume():
    assert message(broken(7, volume=-3.0)) == "frame, row 7: volume is negative (-3)"


def test_zero_volume_is_allowed():
    # Index files (the real NIFTY file) report volume 0 for years.
    bars = broken(7, volume=0.0)
    assert validate_bars(bars, "frame") is bars


def test_high_below_low():
    assert message(broken(11, high=5.0, low=6.0, open=5.5, close=5.5)).startswith(
        "frame, row 11: High (5) is below Low (6)"
    )


def test_open_above_high():
    bars = broken(12)
    bars.iloc[12, bars.columns.get_loc("open")] = bars["high"].iloc[12] + 1
    assert message(bars).startswith("frame, row 12: Open (")


def test_close_below_low():
    bars = broken(13)
    bars.iloc[13, bars.columns.get_loc("close")] = bars["low"].iloc[13] - 0.01
    assert message(bars).startswith("frame, row 13: Close (")


def test_duplicate_timestamp():
    bars = random_walk_bars(10, seed=1)
    index = bars.index.to_list()
    index[6] = index[5]
    bars.index = pd.DatetimeIndex(index, name="datetime")
    assert message(bars).startswith("frame, row 6: duplicate timestamp")


def test_out_of_order_timestamp():
    bars = random_walk_bars(10, seed=1)
    index = bars.index.to_list()
    index[3], index[4] = index[4], index[3]
    bars.index = pd.DatetimeIndex(index, name="datetime")
    assert message(bars).startswith("frame, row 4: timestamp out of order")


def test_missing_canonical_column():
    bars = random_walk_bars(10).drop(columns=["high"])
    assert message(bars) == "frame: missing column(s) high"


def test_empty_frame():
    assert message(random_walk_bars(10).iloc[:0]) == "frame: no bars (the data has no rows)"


def test_the_first_offending_row_is_reported_when_several_are_bad():
    bars = broken(20, open=-1.0)
    bars.iloc[8, bars.columns.get_loc("open")] = -2.0
    assert message(bars).startswith("frame, row 8: open must be positive")


@st.composite
def valid_bars(draw) -> pd.DataFrame:
    """Any bars with Low <= Open, Close <= High, positive prices, volume >= 0, rising time."""
    n = draw(st.integers(1, 60))
    prices = hnp.arrays(np.float64, n, elements=st.floats(1e-4, 1e6))
    fractions = hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0))
    low = draw(prices)
    high = low * (1.0 + draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 0.5))))
    high = np.maximum(high, low)
    open_ = np.clip(low + draw(fractions) * (high - low), low, high)
    close = np.clip(low + draw(fractions) * (high - low), low, high)
    volume = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1e12)))
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(1, 10_000)))
    index = pd.DatetimeIndex(
        pd.Timestamp("1990-01-01") + pd.to_timedelta(np.cumsum(steps), unit="min"),
        name="datetime",
    )
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


@settings(max_examples=200, deadline=None)
@given(bars=valid_bars())
def test_any_valid_bars_pass_unchanged(bars):
    before = bars.copy()
    assert validate_bars(bars, "generated") is bars
    pd.testing.assert_frame_equal(bars, before)


def test_a_million_bars_validate_quickly():
    # The benchmark's target is validation within 2x pandas' CSV read (~0.35 s for a million
    # bars here); validation itself takes ~20 ms, so a generous bound still catches a
    # regression to per-row Python.
    bars = random_walk_bars(1_000_000, seed=2)
    start = time.perf_counter()
    validate_bars(bars, "million")
    assert time.perf_counter() - start < 0.5

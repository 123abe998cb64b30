"""Bars from DataFrames and Parquet files go through the same validation as CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kerastrader.errors import DataError
from kerastrader.feeds.frames import bars_from_frame, load_any, load_parquet
from tests.conftest import random_walk_bars, tiny_config


def test_a_frame_with_a_datetime_index_loads_unchanged():
    frame = random_walk_bars(100, seed=1)
    bars = bars_from_frame(frame)
    pd.testing.assert_frame_equal(bars, frame, check_names=False, check_freq=False)


def test_a_frame_with_a_date_column_and_capitalised_names_loads():
    frame = random_walk_bars(20, seed=1).reset_index()
    frame.columns = ["Date", "Open", "High", "Low", "Close", "Volume"]
    bars = bars_from_frame(frame)
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert bars.index[0] == frame["Date"][0]


def test_the_callers_frame_is_not_changed():
    frame = random_walk_bars(20, seed=1)
    before = frame.copy()
    bars = bars_from_frame(frame)
    bars["close"] = bars["close"] * 2
    pd.testing.assert_frame_equal(frame, before)


def test_a_timezone_aware_index_becomes_utc():
    frame = random_walk_bars(5, seed=1)
    frame.index = (frame.index + pd.Timedelta(hours=16)).tz_localize("America/New_York")
    bars = bars_from_frame(frame)
    assert bars.index[0] == pd.Timestamp("2000-01-03 21:00")


def test_bad_bars_in_a_frame_name_the_position():
    frame = random_walk_bars(30, seed=1)
    frame.iloc[12, frame.columns.get_loc("close")] = -1.0
    with pytest.raises(DataError, match=r"^prices, row 12: close must be positive"):
        bars_from_frame(frame, "prices")


def test_a_frame_without_timestamps_is_refused():
    frame = random_walk_bars(5, seed=1).reset_index(drop=True)
    with pytest.raises(DataError, match="no timestamps"):
        bars_from_frame(frame)


def test_parquet_gives_the_same_bars_as_the_csv(orcl, tmp_path):
    path = tmp_path / "orcl.parquet"
    orcl.to_parquet(path)
    bars = load_parquet(path)
    np.testing.assert_array_equal(bars.to_numpy(), orcl.to_numpy())
    assert (bars.index == orcl.index).all()
    assert len(bars.attrs["sha256"]) == 64


def test_a_damaged_parquet_file_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="broken.parquet: not a readable Parquet file"):
        load_parquet(path)


def test_the_suffix_picks_the_reader(orcl, tmp_path):
    path = tmp_path / "orcl.pq"
    orcl.to_parquet(path)
    assert len(load_any(path)) == len(orcl)


def test_a_parquet_file_backtests_end_to_end(trained, orcl_slice, tmp_path):
    from kerastrader.backtest import run_experiment

    path = tmp_path / "orcl.parquet"
    orcl_slice.to_parquet(path)
    out = tmp_path / "run"
    run_experiment(tiny_config(data={"path": str(path)}), out, model_dir=trained.loaded.path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["start"] == trained.loaded.metadata["periods"]["test"][0]
    assert metrics["data"]["path"] == str(path)

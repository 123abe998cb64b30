"""data.missing: "ffill" repairs a bar from earlier bars only; "interpolate" reads later bars,
and a run that used it says so (metrics.json's run.look_ahead and the report's headline)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kerastrader.errors import DataError
from kerastrader.feeds.loader import load_csv
from tests.conftest import random_walk_bars, tiny_config

HEADER = "Date,Open,High,Low,Close,Volume"


def write(path, frame: pd.DataFrame, blanks: dict[int, list[str]] | None = None):
    """``frame`` as a CSV file, with the named cells of some rows left empty."""
    lines = [HEADER]
    for i, (when, row) in enumerate(frame.iterrows()):
        cells = {c: f"{row[c]:.6f}" for c in ("open", "high", "low", "close")}
        cells["volume"] = f"{row['volume']:.0f}"
        for c in (blanks or {}).get(i, []):
            cells[c] = ""
        lines.append(",".join([when.date().isoformat(), *(cells[c] for c in cells)]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def walk() -> pd.DataFrame:
    return random_walk_bars(60, seed=11)


def test_ffill_makes_a_bar_missing_its_close_a_flat_bar_at_the_previous_close(tmp_path, walk):
    bars = load_csv(write(tmp_path / "b.csv", walk, {30: ["close"]}), missing="ffill")
    previous_close = float(f"{walk['close'].iloc[29]:.6f}")
    for col in ("open", "high", "low", "close"):
        assert bars[col].iloc[30] == previous_close
    assert bars["volume"].iloc[30] == 0.0
    assert len(bars) == len(walk)


def test_ffill_carries_the_last_real_close_through_consecutive_missing_bars(tmp_path, walk):
    bars = load_csv(write(tmp_path / "b.csv", walk, {30: ["high"], 31: ["open", "low"]}),
                    missing="ffill")  # fmt: skip
    previous_close = float(f"{walk['close'].iloc[29]:.6f}")
    assert list(bars["close"].iloc[30:32]) == [previous_close, previous_close]
    assert list(bars["high"].iloc[30:32]) == [previous_close, previous_close]
    assert bars["close"].iloc[32] == float(f"{walk['close'].iloc[32]:.6f}")  # real bars again


def test_ffill_of_a_missing_volume_alone_keeps_the_bars_prices(tmp_path, walk):
    bars = load_csv(write(tmp_path / "b.csv", walk, {30: ["volume"]}), missing="ffill")
    assert bars["volume"].iloc[30] == 0.0
    assert bars["close"].iloc[30] == float(f"{walk['close'].iloc[30]:.6f}")


@pytest.mark.parametrize("t", [29, 30, 31, 45])
def test_ffill_does_not_depend_on_later_bars(tmp_path, walk, t):
    """Change every bar after t (prices, and another hole): nothing at or before t moves."""
    first = load_csv(write(tmp_path / "a.csv", walk, {30: ["close", "open"]}), missing="ffill")
    later = walk.copy()
    rng = np.random.default_rng(t)
    later.iloc[t + 1 :, :4] *= rng.uniform(0.5, 1.5, size=(len(walk) - t - 1, 1))
    blanks = {30: ["close", "open"]} | {k: ["low"] for k in range(t + 1, len(walk), 7)}
    second = load_csv(write(tmp_path / "b.csv", later, blanks), missing="ffill")
    pd.testing.assert_frame_equal(first.iloc[: t + 1], second.iloc[: t + 1])


def test_interpolate_does_depend_on_later_bars_and_the_bars_say_so(tmp_path, walk):
    hole = {30: ["open", "high", "low", "close"]}  # the whole bar, so it stays a valid bar
    first = load_csv(write(tmp_path / "a.csv", walk, hole), missing="interpolate")
    later = walk.copy()
    later.iloc[31:, :4] *= 1.2
    second = load_csv(write(tmp_path / "b.csv", later, hole), missing="interpolate")
    assert first["close"].iloc[30] != second["close"].iloc[30]  # bar 30 read bar 31
    assert first.attrs["look_ahead"] == (
        "interpolated 4 cell(s) from later bars (data.missing = interpolate)"
    )


def test_ffill_leaves_no_look_ahead_mark(tmp_path, walk):
    bars = load_csv(write(tmp_path / "b.csv", walk, {30: ["close"]}), missing="ffill")
    assert "look_ahead" not in bars.attrs


def test_ffill_cannot_repair_the_first_bar(tmp_path, walk):
    path = write(tmp_path / "b.csv", walk, {0: ["close"]})
    with pytest.raises(DataError, match=r"row 2: close is empty or NaN on the first bar"):
        load_csv(path, missing="ffill")


def test_an_interpolated_run_is_flagged_look_ahead_in_metrics_and_report(orcl_slice_csv, tmp_path):
    """A real tiny run on ORCL 2000-2006 with one bar's prices left empty in the test period;
    the same data repaired by ffill and backtested with that model is not flagged."""
    from kerastrader.backtest import run_experiment

    raw = pd.read_csv(orcl_slice_csv)
    raw.loc[raw["Date"] == "2005-06-15", ["Open", "High", "Low", "Close", "Adj Close"]] = np.nan
    holed = tmp_path / "orcl-holed.csv"
    raw.to_csv(holed, index=False)

    interpolated = tmp_path / "interpolated"
    run_experiment(tiny_config(data={"path": str(holed), "missing": "interpolate"}), interpolated)
    run = json.loads((interpolated / "metrics.json").read_text())["run"]
    assert run["look_ahead"].endswith("interpolated 5 cell(s) from later bars "
                                      "(data.missing = interpolate)")  # fmt: skip
    assert "LOOK-AHEAD" in (interpolated / "report.html").read_text()

    filled = tmp_path / "filled"
    cfg = tiny_config(data={"path": str(holed), "missing": "ffill"})
    run_experiment(cfg, filled, model_dir=interpolated / "model")
    assert json.loads((filled / "metrics.json").read_text())["run"]["look_ahead"] is None
    assert "LOOK-AHEAD" not in (filled / "report.html").read_text()

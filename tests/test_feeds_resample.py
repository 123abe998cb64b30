"""Resampling agrees with Backtrader's own resampler on the real one-minute file."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from kerastrader.errors import ConfigError
from kerastrader.feeds.btfeed import make_feed
from kerastrader.feeds.loader import load_csv
from kerastrader.feeds.resample import filter_session, resample_bars
from tests.conftest import shared_file

NAMES = ["Date", "Time", "Open", "High", "Low", "Close", "Volume", "OpenInterest"]
COLS = ["open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def minutes() -> pd.DataFrame:
    return load_csv(shared_file("2006-01-02-volume-min-001.csv"), names=NAMES)


def backtrader_resample(bars: pd.DataFrame, specs: dict[str, tuple]) -> dict[str, pd.DataFrame]:
    """Backtrader's own resampler over ``bars``: {name: (timeframe, compression)} -> the bars
    of each resampled copy of one feed, all in one run (each copy records a bar as it
    completes; prenext too, so a copy that has no bar yet hides none of the others')."""
    rows: dict[str, list] = {name: [] for name in specs}

    class Record(bt.Strategy):
        def prenext(self):
            self.next()

        def next(self):
            for d, out in zip(self.datas[1:], rows.values(), strict=True):
                if len(d) > len(out):
                    out.append((d.datetime.datetime(0), *(getattr(d, c)[0] for c in COLS)))

    cerebro = bt.Cerebro(stdstats=False)
    feed = make_feed(bars, "FUT", timeframe=bt.TimeFrame.Minutes, compression=1)
    cerebro.adddata(feed)
    for timeframe, compression in specs.values():
        cerebro.resampledata(feed, timeframe=timeframe, compression=compression)
    cerebro.addstrategy(Record)
    cerebro.run()
    return {
        name: pd.DataFrame(r, columns=["datetime", *COLS]).set_index("datetime")
        for name, r in rows.items()
    }


@pytest.fixture(scope="module")
def theirs(minutes) -> dict[str, pd.DataFrame]:
    """Backtrader's 5-minute and daily bars of the file, from one pass over its 30,889 bars."""
    return backtrader_resample(
        minutes, {"5min": (bt.TimeFrame.Minutes, 5), "1D": (bt.TimeFrame.Days, 1)}
    )


def test_five_minute_bars_match_backtrader_on_every_complete_bucket(minutes, theirs):
    ours = resample_bars(minutes, "5min")
    theirs = theirs["5min"]
    counts = minutes["close"].resample("5min", closed="right", label="right").count()
    day_last = ours.groupby(ours.index.date).tail(1).index
    # Backtrader stamps a session's last bar at the session end (23:59:59.999989) and, after a
    # gap inside a bucket, merges the next bucket into it; elsewhere the bars are the same.
    complete = ours.index[(counts.reindex(ours.index) == 5).to_numpy()].difference(day_last)
    assert len(complete) > 4000
    joined = ours.loc[complete, COLS].join(theirs, rsuffix="_bt", how="left")
    for c in COLS:
        np.testing.assert_array_equal(joined[c].to_numpy(), joined[f"{c}_bt"].to_numpy())


def test_daily_bars_match_backtrader_exactly(minutes, theirs):
    ours = resample_bars(minutes, "1D")
    theirs = theirs["1D"]
    assert list(ours.index.date) == list(theirs.index.date)
    np.testing.assert_array_equal(ours[COLS].to_numpy(), theirs[COLS].to_numpy())


def test_hourly_bars_are_labelled_by_their_end(minutes):
    hourly = resample_bars(minutes, "60min")
    first = minutes.loc["2006-01-02 09:01":"2006-01-02 10:00"]
    assert hourly.index[0] == pd.Timestamp("2006-01-02 10:00")
    assert hourly["volume"].iloc[0] == first["volume"].sum()
    assert hourly["high"].iloc[0] == first["high"].max()


def test_empty_periods_are_not_filled(minutes):
    hourly = resample_bars(minutes, "60min")
    assert not (hourly.index.hour == 3).any()  # no trading at night, so no night bars


def test_session_filter_keeps_bars_inside_the_hours(minutes):
    day = filter_session(minutes, "09:00", "17:30")
    assert day.index.time.min() >= pd.Timestamp("09:00").time()
    assert day.index.time.max() <= pd.Timestamp("17:30").time()
    assert len(day) < len(minutes)


def test_bad_rule_is_a_config_error(minutes):
    with pytest.raises(ConfigError, match="not a pandas offset"):
        resample_bars(minutes, "five minutes")

"""Numbers in the units they claim: bars per year from the data, probabilities as returns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kerastrader.strategies.sizing import bars_per_year, expected_move, realised_volatility


def test_daily_bars_are_252_a_year():
    assert bars_per_year(pd.bdate_range("2020-01-01", periods=300)) == 252


def test_half_hour_bars_of_a_new_york_session_are_13_a_day():
    days = pd.bdate_range("2020-01-06", periods=20)
    stamps = [d + pd.Timedelta(hours=14, minutes=30 * k) for d in days for k in range(1, 14)]
    assert bars_per_year(pd.DatetimeIndex(stamps)) == 252 * 13


def test_intraday_volatility_annualised_with_the_bars_per_year_is_the_daily_one():
    # i.i.d. half-hour log returns of sd s: a day (13 of them) has sd s x sqrt(13), a year
    # s x sqrt(13 x 252); annualising with 252 would understate it by sqrt(13).
    s = 0.002
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, s, 20_000)))
    vol = realised_volatility(closes, 252 * 13)
    assert vol == pytest.approx(s * math.sqrt(252 * 13), rel=0.02)


def test_a_probability_is_worth_its_edge_times_the_typical_move():
    closes = np.array([100.0, 101.0, 100.0, 102.0])  # one-bar moves 1%, 0.990%, 2%
    typical = (0.01 + 1 / 101 + 0.02) / 3
    assert expected_move(0.6, 0.5, closes, 1) == pytest.approx(0.2 * typical)
    assert expected_move(0.4, 0.5, closes, 1) == pytest.approx(-0.2 * typical)
    assert math.isnan(expected_move(0.6, 0.5, closes[:1], 1))

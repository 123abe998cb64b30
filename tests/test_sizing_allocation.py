"""Sizing and allocation as pure functions: the numbers behind every order."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from kerastrader.strategies import allocation as alloc
from kerastrader.strategies import sizing


def test_signal_strength_is_distance_from_center_over_scale_clipped():
    assert sizing.signal_strength(0.55, 0.5, 0.1) == pytest.approx(0.5)
    assert sizing.signal_strength(0.9, 0.5, 0.1) == 1.0
    assert sizing.signal_strength(-0.004, 0.0, 0.002) == -1.0
    assert sizing.signal_strength(math.nan, 0.5, 0.1) == 0.0


def test_realised_volatility_annualises_the_std_of_log_returns():
    closes = 100 * np.exp(np.cumsum([0.0, 0.01, -0.01, 0.02, -0.02]))
    expected = np.std([0.01, -0.01, 0.02, -0.02], ddof=1) * math.sqrt(252)
    assert sizing.realised_volatility(closes) == pytest.approx(expected)


def test_volatility_scale_is_target_over_realised_capped_and_zero_when_unknown():
    assert sizing.volatility_scale(0.30, 0.15, 5.0) == pytest.approx(0.5)
    assert sizing.volatility_scale(0.01, 0.15, 2.0) == 2.0
    assert sizing.volatility_scale(math.nan, 0.15, 2.0) == 0.0


def test_kelly_fractions():
    assert sizing.kelly_fraction_binary(0.6) == pytest.approx(0.2)
    assert sizing.kelly_fraction_binary(0.5, payoff=2.0) == pytest.approx(0.25)
    assert sizing.kelly_fraction_continuous(0.001, 0.0004) == pytest.approx(2.5)
    assert sizing.kelly_weight(2.5, 0.5, 0.3, allow_short=True) == 0.3
    assert sizing.kelly_weight(-0.2, 0.5, 1.0, allow_short=False) == 0.0


def test_limits_clip_each_position_then_scale_gross():
    w = sizing.apply_limits(np.array([0.8, -0.6, 0.2]), max_position=0.5, max_gross=1.0)
    np.testing.assert_allclose(w, np.array([0.5, -0.5, 0.2]) / 1.2)


def test_turnover_limit_scales_every_trade_by_the_same_factor():
    out = sizing.limit_turnover(np.array([0.5, 0.0]), np.array([0.0, 0.5]), 0.5)
    np.testing.assert_allclose(out, [0.25, 0.25])


def test_whole_shares_round_toward_zero_so_a_target_is_never_exceeded():
    assert sizing.shares_for(0.95, 100_000, 33.0, fractional=False) == 2878
    assert sizing.shares_for(-0.95, 100_000, 33.0, fractional=False) == -2878
    assert sizing.shares_for(0.95, 100_000, 33.0, fractional=True) == pytest.approx(2878.787878)


def test_cost_filter_needs_the_move_to_exceed_the_round_trip():
    assert not sizing.covers_costs(0.002, 0.003)
    assert sizing.covers_costs(-0.004, 0.003)


def test_proportional_allocation_hands_out_gross_by_distance_from_center():
    w = alloc.proportional_weights(np.array([0.6, 0.55, 0.4]), 0.5, False, 1.0)
    np.testing.assert_allclose(w, [2 / 3, 1 / 3, 0.0])
    w = alloc.proportional_weights(np.array([0.6, 0.55, 0.4]), 0.5, True, 1.0)
    np.testing.assert_allclose(w, [0.4, 0.2, -0.4])


def test_top_k_skips_instruments_without_a_prediction():
    w = alloc.top_k_weights(np.array([math.nan, 0.7, 0.6, 0.65]), 2, False, 1.0)
    np.testing.assert_allclose(w, [0.0, 0.5, 0.0, 0.5])


def test_strategic_weights_without_signal_are_the_base_weights():
    base = np.array([0.4, 0.45, 0.05, 0.1])
    out = alloc.strategic_weights(base, np.full(4, 0.5), 0.5, 0.1, 0.5)
    np.testing.assert_allclose(out, base)


@pytest.mark.parametrize(
    ("schedule", "previous", "today", "expected"),
    [
        ("bar", dt.date(2024, 1, 2), dt.date(2024, 1, 2), True),
        ("daily", dt.date(2024, 1, 2), dt.date(2024, 1, 2), False),
        ("daily", dt.date(2024, 1, 2), dt.date(2024, 1, 3), True),
        ("weekly", dt.date(2024, 1, 2), dt.date(2024, 1, 5), False),
        ("weekly", dt.date(2024, 1, 5), dt.date(2024, 1, 8), True),
        ("monthly", dt.date(2024, 1, 2), dt.date(2024, 1, 31), False),
        ("monthly", dt.date(2024, 1, 31), dt.date(2024, 2, 1), True),
    ],
)
def test_rebalance_schedules(schedule, previous, today, expected):
    assert alloc.is_rebalance_bar(previous, today, schedule) is expected

"""The deflated Sharpe ratio and PBO on inputs worked by hand, and on pure noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kerastrader.sweeps.stats import (
    choose_blocks,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    probability_of_overfitting,
    sharpe,
)


def test_deflated_sharpe_matches_the_papers_worked_example():
    """Bailey and Lopez de Prado (2014), section 5: annualised SR 2.5 from T = 1250 daily
    returns (250 a year), N = 100 trials whose annualised Sharpe variance is 0.5, skewness -3,
    kurtosis 10. By hand:

    daily SR = 2.5 / sqrt(250) = 0.158114; daily variance V = 0.5 / 250 = 0.002, sqrt 0.044721
    Z^-1(1 - 1/100) = 2.326348, Z^-1(1 - 1/(100 e)) = Z^-1(0.996321) = 2.680210
    SR0 = 0.044721 * (0.422784 * 2.326348 + 0.577216 * 2.680210)
        = 0.044721 * (0.983547 + 1.547060) = 0.044721 * 2.530607 = 0.113172 (paper: 0.1132)
    z = (0.158114 - 0.113172) * sqrt(1249) / sqrt(1 + 3 * 0.158114 + 9/4 * 0.158114^2)
      = 0.044942 * 35.341194 / sqrt(1.530592) = 1.588298 / 1.237171 = 1.28382
    DSR = Z(1.28382) = 0.9004 (the paper's 0.9004).
    """
    sr = 2.5 / math.sqrt(250)
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.113172, abs=1e-6)
    dsr = probabilistic_sharpe(sr, sr0, 1250, skew=-3.0, kurtosis=10.0)
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_probabilistic_sharpe_by_hand():
    """SR 0.1 against 0 from T = 101 normal returns: z = 0.1 * 10 / sqrt(1 + 0.5 * 0.01)
    = 0.997509, Z(z) = 0.84074; against 0.1 itself it is a coin toss."""
    assert probabilistic_sharpe(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(0.84074, abs=1e-5)
    assert probabilistic_sharpe(0.1, 0.1, 101, 0.0, 3.0) == pytest.approx(0.5)


def test_expected_max_sharpe_grows_with_trials_and_is_zero_for_one():
    assert expected_max_sharpe(1, 0.01) == 0.0
    values = [expected_max_sharpe(n, 0.01) for n in (2, 10, 100, 1000)]
    assert values == sorted(values)
    # N = 2: 0.1 * (0.422784 * Z^-1(0.5) + 0.577216 * Z^-1(1 - 1/(2e)))
    #      = 0.1 * (0 + 0.577216 * Z^-1(0.816060)) = 0.1 * 0.577216 * 0.900453 = 0.051976
    assert values[0] == pytest.approx(0.051976, abs=1e-6)


def test_deflated_sharpe_from_returns_uses_the_trials_variance():
    rng = np.random.default_rng(3)
    best = rng.normal(0.001, 0.01, 500)
    trials = np.array([0.05, 0.0, -0.05, sharpe(best)])
    d = deflated_sharpe(best, trials)
    assert d.n_trials == 4 and d.n_returns == 500
    assert d.sharpe_variance == pytest.approx(np.var(trials, ddof=1))
    assert d.sr0 == pytest.approx(expected_max_sharpe(4, np.var(trials, ddof=1)))
    assert d.dsr < d.psr_zero  # deflating against SR0 > 0 can only lower the probability


# Two strategies, two blocks of two days. Sharpe ratios by hand (mean / sample sd):
# [0.02, 0.04] -> 0.03 / 0.014142 = 2.1213; [0.01, 0.03] -> 1.4142; [0.01, 0.02] -> 2.1213;
# [-0.01, -0.02] -> -2.1213.
OVERFIT = np.array([[0.02, 0.01], [0.04, 0.03], [-0.01, 0.01], [-0.02, 0.02]])
# A wins block 1 (2.12 vs 1.41) and is last in block 2 (-2.12 vs 2.12); B wins block 2 and is
# last in block 1: each split picks the one that loses out of sample, rank 1 of 2, w = 1/3,
# logit ln(1/2) < 0, so PBO = 1.
ROBUST = np.array([[0.01, 0.01], [0.03, 0.02], [-0.01, 0.02], [-0.02, 0.01]])
# B wins both blocks (2.12 vs 1.41; 2.12 vs -2.12): rank 2 of 2 out of sample, w = 2/3,
# logit ln 2 > 0, so PBO = 0.


def test_pbo_by_hand_on_two_strategies_and_two_blocks():
    over = probability_of_overfitting(OVERFIT, blocks=2)
    assert over.n_splits == 2
    assert over.pbo == 1.0
    assert over.logits == pytest.approx([math.log(0.5), math.log(0.5)])
    robust = probability_of_overfitting(ROBUST, blocks=2)
    assert robust.pbo == 0.0
    assert robust.logits == pytest.approx([math.log(2.0), math.log(2.0)])


def test_pbo_counts_c_of_s_over_half_splits_and_drops_the_remainder():
    m = np.random.default_rng(0).normal(0, 0.01, (83, 3))
    result = probability_of_overfitting(m, blocks=8)
    assert result.n_splits == math.comb(8, 4) == 70
    assert result.n_returns == 80  # 83 // 8 * 8


def test_pbo_rejects_a_single_trial_and_odd_blocks():
    with pytest.raises(ValueError, match="two trials"):
        probability_of_overfitting(np.zeros((40, 1)))
    with pytest.raises(ValueError, match="even"):
        probability_of_overfitting(np.zeros((40, 3)), blocks=3)


def test_on_pure_noise_pbo_is_near_one_half_and_the_deflated_sharpe_is_not_significant():
    """30 strategies of iid noise over 1000 days, 20 draws: choosing the best in sample is a
    coin toss out of sample, and the deflated Sharpe ratio of the best one is not significant,
    where the undeflated probabilistic Sharpe ratio mostly says it is."""
    pbos, dsrs, psrs = [], [], []
    for seed in range(20):
        m = np.random.default_rng(seed).normal(0.0, 0.01, (1000, 30))
        pbos.append(probability_of_overfitting(m, blocks=10).pbo)
        srs = np.array([sharpe(m[:, j]) for j in range(m.shape[1])])
        d = deflated_sharpe(m[:, int(np.argmax(srs))], srs)
        dsrs.append(d.dsr)
        psrs.append(d.psr_zero)
    assert 0.4 <= float(np.mean(pbos)) <= 0.75
    assert sum(x >= 0.95 for x in dsrs) <= 2
    assert float(np.median(dsrs)) < 0.9
    assert float(np.median(psrs)) > 0.9  # the selection bias the deflation removes


def test_choose_blocks():
    assert choose_blocks(1000) == 16
    assert choose_blocks(100) == 10
    assert choose_blocks(55) == 4
    assert choose_blocks(5) == 2

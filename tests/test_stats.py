"""The paired statistics of promotion, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpo.promotion.champion import decide
from hpo.core.stats import PairedComparison, compare_paired, mcnemar_exact, mean_std, paired_bootstrap


def test_mcnemar_exact_against_the_binomial_by_hand():
    # 1 vs 9 discordant pairs: 2 * (C(10,0) + C(10,1)) / 2**10 = 22 / 1024
    assert mcnemar_exact(1, 9) == 22 / 1024 == mcnemar_exact(9, 1)
    assert mcnemar_exact(0, 5) == 2 / 32  # 2 * 1 / 2**5
    assert mcnemar_exact(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 0.109375
    assert mcnemar_exact(3, 3) == 1.0  # the two-sided tail is capped at 1
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence either way
    # a large count (exact integer arithmetic, no overflow): 600 vs 400 is far past 0.05
    assert 0 < mcnemar_exact(600, 400) < 1e-9
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def _pairs(only_a: int, only_b: int, both: int, neither: int = 0) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * only_a + [0] * only_b + [1] * both + [0] * neither, dtype=bool)
    b = np.array([0] * only_a + [1] * only_b + [1] * both + [0] * neither, dtype=bool)
    return a, b


def test_paired_bootstrap_interval_matches_the_normal_approximation_by_hand():
    # 1000 examples: 100 only a right, 50 only b right. Difference 0.05; the per-example difference d is
    # +1, -1 or 0, Var(d) = 0.15 - 0.05**2, so sd of the mean = sqrt(0.1475 / 1000) = 0.012145 and the
    # 95 % interval is about 0.05 -+ 1.96 * 0.012145 = [0.0262, 0.0738].
    a, b = _pairs(100, 50, 700, 150)
    low, high = paired_bootstrap(a, b, seed=0)
    sd = math.sqrt((0.15 - 0.05**2) / 1000)
    assert low == pytest.approx(0.05 - 1.96 * sd, abs=0.003)
    assert high == pytest.approx(0.05 + 1.96 * sd, abs=0.003)
    assert paired_bootstrap(a, b, seed=0) == (low, high)  # seeded: the same interval every time


def test_paired_bootstrap_degenerate_cases():
    a, b = _pairs(0, 0, 40, 10)  # the models agree on every example: no spread at all
    assert paired_bootstrap(a, b) == (0.0, 0.0)
    a, b = _pairs(20, 0, 0, 0)  # a right wherever b is wrong, on every example
    assert paired_bootstrap(a, b) == (1.0, 1.0)
    with pytest.raises(ValueError):
        paired_bootstrap(np.ones(3, bool), np.ones(4, bool))


def test_compare_paired_counts_and_accuracies():
    a, b = _pairs(9, 1, 80, 10)  # 100 examples
    c = compare_paired(a, b)
    assert (c.n, c.only_a, c.only_b) == (100, 9, 1)
    assert c.accuracy_a == pytest.approx(0.89) and c.accuracy_b == pytest.approx(0.81)
    assert c.difference == pytest.approx(0.08)
    assert c.p_value == 22 / 1024
    assert c.low <= c.difference <= c.high and c.level == 0.95


def test_mean_and_sample_std():
    assert mean_std([0.8, 0.82, 0.84]) == (pytest.approx(0.82), pytest.approx(0.02))
    assert mean_std([0.7]) == (0.7, None)


def _stats(acc_new: float, acc_old: float, p: float) -> PairedComparison:
    return PairedComparison(400, acc_new, acc_old, 0, 0, acc_new - acc_old, 0.0, 0.0, 0.95, p)


def test_require_improvement_rules():
    assert decide("none", _stats(0.5, 0.9, 1e-9))[0] is True
    assert decide("not_worse", _stats(0.80, 0.80, 1.0))[0] is True  # a tie is not worse
    assert decide("not_worse", _stats(0.7975, 0.80, 0.9))[0] is False
    assert decide("significant", _stats(0.85, 0.80, 0.01))[0] is True
    assert decide("significant", _stats(0.85, 0.80, 0.06))[0] is False  # better, but could be chance
    assert decide("significant", _stats(0.75, 0.80, 0.01))[0] is False  # significantly worse
    ok, why = decide("not_worse", _stats(0.7975, 0.80, 0.9))
    assert "0.7975 < old 0.8000" in why

"""Paired statistics for comparing two classifiers on the same test examples, and the finalists' spread.

Only numpy and the standard library: these run in the promotion's driver on every comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedComparison:
    """Two models scored on the same ``n`` examples: ``a`` (the new one) against ``b`` (the old one)."""

    n: int
    accuracy_a: float
    accuracy_b: float
    only_a: int  # examples a gets right and b gets wrong
    only_b: int  # examples b gets right and a gets wrong
    difference: float  # accuracy_a - accuracy_b
    low: float  # the paired-bootstrap interval of the difference
    high: float
    level: float
    p_value: float  # McNemar's exact test on the discordant pairs (two-sided)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under "both models are equally good", each of the ``only_a +
    only_b`` discordant examples is a fair coin, so the p-value is twice the binomial tail of the smaller
    count, capped at 1. No discordant pair: 1.0."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts must be >= 0, got {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)  # int / int: exact to the float, for any n


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of accuracy_a - accuracy_b over ``resamples`` resamplings of the examples
    (with replacement, the same examples for both models: the pairing is kept).

    Only each example's pair outcome matters (a right only, b right only, or the same), so a resample
    is a multinomial draw of those three counts: the same distribution as resampling indices, without
    an n x resamples index matrix."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal, non-empty 1-d vectors of per-example outcomes, got shapes {a.shape} and {b.shape}")
    n = len(a)
    plus, minus = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [plus / n, minus / n, (n - plus - minus) / n], size=resamples)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)


def compare_paired(correct_a: np.ndarray, correct_b: np.ndarray, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> PairedComparison:
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    low, high = paired_bootstrap(a, b, level, resamples, seed)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    acc_a, acc_b = float(a.mean()), float(b.mean())
    return PairedComparison(len(a), acc_a, acc_b, only_a, only_b, (only_a - only_b) / len(a), low, high, level, mcnemar_exact(only_a, only_b))


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); no deviation from a single value."""
    if not values:
        raise ValueError("no values")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))

"""The ASHA replay of the benchmarks applies Ray's stopping rule to recorded learning curves."""

from __future__ import annotations

import pytest

from benchmarks.replay import Curve, rungs, simulate


def test_rungs_are_grace_times_powers_of_the_reduction_factor_below_the_maximum():
    assert rungs(2, 3, 12) == [2, 6]
    assert rungs(2, 2, 12) == [2, 4, 8]
    assert rungs(4, 3, 12) == [4]


def test_first_trial_at_a_rung_goes_on_and_a_worse_one_stops_there():
    curves = [
        [0.50, 0.60, 0.70, 0.80, 0.80, 0.80],  # first at every rung: trained to the end
        [0.50, 0.50, 0.90, 0.90, 0.90, 0.90],  # below the first at round 2: stopped there, never shows its 0.90
        [0.50, 0.70, 0.70, 0.90, 0.90, 0.95],  # above the median at rounds 2 and 4: to the end
    ]
    rounds, best, span = simulate([Curve(c, None) for c in curves], grace=2, rf=2, slots=1, sign=1.0)
    assert (rounds, best, span) == (6 + 2 + 6, 0.95, 14)  # one slot: the trials run back to back


def test_minimised_metric_stops_the_higher_loss():
    losses = [[0.7, 0.6, 0.5, 0.4], [0.7, 0.65, 0.1, 0.1]]
    rounds, best, _ = simulate([Curve(c, None) for c in losses], grace=2, rf=2, slots=1, sign=-1.0)
    assert rounds == 4 + 2 and best == pytest.approx(0.4)


def test_one_class_rule_stops_the_first_trial_at_a_rung_and_patience_ends_a_flat_curve():
    stuck = Curve([0.5, 0.5, 0.5, 0.5, 0.9, 0.9, 0.9, 0.9], [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    flat = Curve([0.6, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8], [0.6] * 8)
    # Ray's rule alone: the stuck trial is first at rungs 2 and 4, so it runs to the end
    assert simulate([stuck, flat], grace=2, rf=2, slots=1, sign=1.0)[:2] == (8 + 8, 0.9)
    # one-class rule: stopped at round 2; the flat trial then leads every rung
    assert simulate([stuck, flat], grace=2, rf=2, slots=1, sign=1.0, single_class=True)[:2] == (2 + 8, 0.8)
    # patience 2 from the last rung (4): the flat trial's best is round 3, so it ends at round 5
    assert simulate([stuck, flat], grace=2, rf=2, slots=1, sign=1.0, single_class=True, patience=2)[:2] == (2 + 5, 0.8)


def test_a_trial_left_running_alone_at_the_end_idles_the_other_slot():
    first = Curve([0.5, 0.6, 0.7, 0.8, 0.8, 0.8], None)  # first at both rungs: rounds 1-6 in slot 0
    weak = Curve([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], None)  # below it at round 2: stopped, frees slot 1 at t=2
    late = Curve([0.5, 0.7, 0.7, 0.9, 0.9, 0.9], None)  # starts at t=2, above at rungs 2 and 4: ends at t=8
    rounds, best, span = simulate([first, weak, late], grace=2, rf=2, slots=2, sign=1.0)
    assert (rounds, best, span) == (6 + 2 + 6, 0.9, 8)  # slot 0 idles from t=6 to 8: use 14 / (2 x 8)


def test_deferred_one_class_rule_keeps_a_slow_starter_to_the_second_rung():
    slow = Curve([0.5, 0.5, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9], [1.0, 1.0, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5])
    dead = Curve([0.5] * 8, [1.0] * 8)
    # stopped at round 2 by the one-class rule: the slow starter never shows its 0.9
    assert simulate([slow, dead], grace=2, rf=2, slots=1, sign=1.0, single_class=True)[:2] == (2 + 2, 0.5)
    # deferred: both go on to round 4; the slow starter has learned and leads, the dead one still predicts one class
    assert simulate([slow, dead], grace=2, rf=2, slots=1, sign=1.0, single_class=True, defer=True)[:2] == (8 + 4, 0.9)

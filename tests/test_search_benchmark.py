"""The search benchmark's per-seed figures: the best so far against compute, counted in trial-rounds in the order the
rounds ended, against random search's final best; and the anytime curve over seeds."""

from __future__ import annotations

import pytest

from benchmarks._common import best_so_far, first_within
from benchmarks.search import ARMS, _summary, markdown


def test_best_so_far_keeps_the_best_and_skips_failed_rounds():
    assert best_so_far([None, 0.5, 0.4, None, 0.7, 0.6], "max") == [None, 0.5, 0.5, 0.5, 0.7, 0.7]
    assert best_so_far([0.7, 0.6, None, 0.65], "min") == [0.7, 0.6, 0.6, 0.6]


def test_first_within_counts_up_to_the_first_round_close_enough():
    values = [0.80, 0.83, 0.8375, 0.84]
    assert first_within(values, 0.84, 0.25, "max") == 3  # 0.25 points below 0.84, exactly: within
    assert first_within(values, 0.84, 0.1, "max") == 4
    assert first_within(values, 0.90, 0.25, "max") is None
    assert first_within([0.5, 0.404, 0.40], 0.40, 0.5, "min") == 2


def _analysis(values: list[float], mode: str = "max") -> dict:
    best = max(values) if mode == "max" else min(values)
    return {
        "values_in_order": values, "best_value": best, "best_mode": mode, "best_metric": "val_accuracy", "trial_rounds": len(values),
        "trial_epochs": len(values) / 2, "stopped": 0, "converged": 0, "trials": 2,
    }


def _runs(per_seed: list[dict[str, list[float]]]) -> list[dict]:
    return [{"arm": arm, "seed": seed, "wall_s": 1.0, "analysis": _analysis(arms[arm])} for seed, arms in enumerate(per_seed) for arm in ARMS]


FIFO = [0.70, 0.75, 0.80, 0.81, 0.82, 0.83, 0.84, 0.84, 0.85]  # 9 trial-rounds, final best 0.85: a third is 3


def test_per_seed_goal_counts_seeds_within_a_third_of_random_search_compute():
    runs = _runs(
        [
            {"asha_tpe": [0.80, 0.849, 0.70], "random_asha": [0.80, 0.81, 0.82, 0.85], "random_fifo": FIFO},  # TPE at 2 of 9: met
            {"asha_tpe": [0.80, 0.81, 0.82, 0.848], "random_asha": [0.80, 0.81], "random_fifo": FIFO},  # TPE at 4 > 3: not met
        ]
    )
    reach = _summary(runs)["reach"]
    first, second = reach["per_seed"]
    assert (first["target"], first["baseline_trial_rounds"], first["budget_trial_rounds"]) == (0.85, 9, 3)
    assert first["arms"]["asha_tpe"] == {"rounds_to_reach": 2, "share_of_baseline": 2 / 9, "within_budget": True, "trial_rounds": 3, "best_value": 0.849}
    assert first["arms"]["random_asha"]["rounds_to_reach"] == 4 and not first["arms"]["random_asha"]["within_budget"]
    assert first["arms"]["random_fifo"]["rounds_to_reach"] == 9  # 0.84 is 1 point short; only its final 0.85 counts
    assert second["arms"]["asha_tpe"]["rounds_to_reach"] == 4 and not second["arms"]["asha_tpe"]["within_budget"]
    assert second["arms"]["random_asha"]["rounds_to_reach"] is None
    assert reach["arms"]["asha_tpe"]["met_on"] == 1 and reach["arms"]["random_asha"]["met_on"] == 0
    assert reach["goal"]["line"] == "met on 1 of 2 seeds (needs 5 of 6)" and reach["goal"]["met"] is None  # too few seeds
    # a seed that never came close counts as more than any: the median of (4/9, never) is not reached
    assert reach["arms"]["random_asha"]["median_share_to_reach"] is None
    assert reach["arms"]["asha_tpe"]["median_share_to_reach"] == pytest.approx(3 / 9)
    assert reach["searcher_share"] == {"from": "random_asha", "to": "asha_tpe", "met_on": [0, 1], "median_share_to_reach": [None, pytest.approx(3 / 9)]}


def test_goal_needs_five_of_six_seeds():
    met = {"asha_tpe": [0.85], "random_asha": [0.85], "random_fifo": FIFO}
    missed = {"asha_tpe": [0.70, 0.70, 0.70, 0.85], "random_asha": [0.85], "random_fifo": FIFO}
    assert _summary(_runs([met] * 5 + [missed]))["reach"]["goal"]["met"] is True
    assert _summary(_runs([met] * 4 + [missed] * 2))["reach"]["goal"]["met"] is False


def test_anytime_curve_is_the_best_so_far_at_shares_of_random_search_compute():
    runs = _runs(
        [
            {"asha_tpe": [0.80, 0.849, 0.70], "random_asha": [0.80, 0.81, 0.82, 0.85], "random_fifo": FIFO},
            {"asha_tpe": [0.60, 0.81, 0.82, 0.848], "random_asha": [0.80, 0.81], "random_fifo": FIFO},
        ]
    )
    payload = {"summary": _summary(runs), "runs": runs, "quick": True, "machine": {"gpu": None, "cpus_usable": 2, "date_utc": "now", "versions": {"ray": "x", "optuna": "y"}}, "command": "python benchmarks/run.py search"}
    anytime = payload["summary"]["anytime"]
    assert anytime["baseline_trial_rounds"] == 9
    curve = {round(row["fraction"], 4): row for row in anytime["arms"]["asha_tpe"]["curve"]}
    assert curve[0.05]["trial_rounds"] == 0 and curve[0.05]["best"]["n"] == 0  # no round yet
    assert curve[0.3333]["trial_rounds"] == 3 and curve[0.3333]["best"]["values"] == [0.849, 0.82]
    assert curve[1.0]["best"]["values"] == [0.849, 0.848]  # an ended sweep keeps its final best
    assert curve[1.0]["gap_points"]["values"] == pytest.approx([-0.1, -0.2])
    text = markdown(payload)
    assert "met on 1 of 2 seeds (needs 5 of 6): **not decided: too few seeds**" in text
    assert "| a third | 3 | 0.8345 (0.8200–0.8490) |" in text

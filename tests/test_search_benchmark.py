"""The search benchmark's per-seed figures: the best so far against compute, counted in trial-rounds in the order the
rounds ended, against random search's final best; and the anytime curve over seeds."""

from __future__ import annotations

import json

import pytest

from benchmarks._common import BenchError, best_so_far, first_within
from benchmarks.search import ARMS, _summary, markdown, reanalyse


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


def test_tolerance_table_counts_seeds_within_each_margin():
    runs = _runs(
        [
            {"asha_tpe": [0.80, 0.845, 0.70], "random_asha": [0.80, 0.81, 0.82, 0.85], "random_fifo": FIFO},  # 0.5 points short at 2 of 9
            {"asha_tpe": [0.80, 0.81, 0.82, 0.848], "random_asha": [0.80, 0.8425], "random_fifo": FIFO},  # close only at 4 > 3
        ]
    )
    t = _summary(runs)["tolerance"]
    assert t["seeds"] == 2 and t["points"] == [0.25, 0.5, 0.75, 1.0]
    tpe = {row["points"]: (row["within_budget"], row["by_end"]) for row in t["arms"]["asha_tpe"]}
    assert tpe == {0.25: (0, 1), 0.5: (1, 2), 0.75: (1, 2), 1.0: (1, 2)}
    assert {row["points"]: row["within_budget"] for row in t["arms"]["random_asha"]} == {0.25: 0, 0.5: 0, 0.75: 1, 1.0: 1}
    assert all(row["by_end"] == 2 for row in t["arms"]["random_fifo"])  # random search reaches its own best


def test_noise_is_the_plateau_spread_and_the_peak_above_it():
    plateau = [0.80, 0.82, 0.80, 0.82]  # standard deviation 1.1547 points; mean 0.81
    learned = {"curve": [0.5, 0.7, *plateau], "top_class_share_curve": [1.0, 0.6, 0.5, 0.5, 0.5, 0.5], "rounds_done": 6, "rounds_planned": 6}
    flat = {"curve": [0.5] * 6, "top_class_share_curve": [1.0] * 6, "rounds_done": 6, "rounds_planned": 6}  # one class: left out
    stopped = {"curve": [0.5, 0.9], "rounds_done": 2, "rounds_planned": 6}  # not trained to the end: left out
    runs = _runs([{"asha_tpe": [0.8], "random_asha": [0.8], "random_fifo": [0.5, 0.7, 0.80, 0.82, 0.80, 0.83]}])
    fifo = next(r for r in runs if r["arm"] == "random_fifo")
    fifo["analysis"]["per_trial"] = [learned, flat, stopped]
    noise = _summary(runs)["noise"]
    assert noise["round_spread_points"]["values"] == [pytest.approx(1.1547, abs=1e-4)]
    # the final best (0.83) against the best trial's plateau mean (0.81): 2 points of luck
    assert noise["per_seed"] == [{"seed": 0, "points": pytest.approx(2.0)}]


def test_an_earlier_run_is_analysed_again_without_running_sweeps(tmp_path):
    runs = _runs([{"asha_tpe": [0.80, 0.849, 0.70], "random_asha": [0.80, 0.85], "random_fifo": FIFO}])
    machine = {"gpu": None, "cpus_usable": 2, "date_utc": "then", "versions": {"ray": "x", "optuna": "y"}}
    earlier = {"benchmark": "search", "machine": machine, "quick": False, "seeds_planned": 6, "runs": runs, "summary": {}, "command": "python benchmarks/run.py search --reps 6"}
    source = tmp_path / "earlier.json"
    source.write_text(json.dumps(earlier))
    payload = reanalyse(tmp_path / "out", source)
    assert payload["runs"] == runs and payload["command"] == earlier["command"] and payload["machine"]["date_utc"] == "then"
    text = (tmp_path / "out" / "search.md").read_text()
    assert "seeds 0–0 (saved after 1 of the 6 planned seeds)" in text and "How close, at other tolerances" in text
    (tmp_path / "other.json").write_text(json.dumps({"benchmark": "replay"}))
    with pytest.raises(BenchError, match="not a search benchmark"):
        reanalyse(tmp_path / "out", tmp_path / "other.json")


class _Recorder:
    """Stands in for the sweep runner: records which sweeps the benchmark asks for, each ending with FIFO's rounds."""

    def __init__(self):
        self.names: list[str] = []

    def run(self, name: str, overrides: dict) -> dict:
        self.names.append(name)
        return {"wall_s": 1.0, "analysis": _analysis(FIFO)}


def test_a_run_cut_short_is_resumed_with_only_the_seeds_it_lacks(tmp_path):
    from benchmarks import search

    first = _Recorder()
    search.run(tmp_path, quick=True, seeds=1, runner=first)
    assert first.names == [f"quick-search-{arm}-seed0" for arm in ARMS]
    again = _Recorder()
    payload = search.run(tmp_path, quick=True, seeds=2, runner=again, resume=True)
    assert again.names == [f"quick-search-{arm}-seed1" for arm in ARMS]  # seed 0 is kept, not run again
    assert sorted((r["arm"], r["seed"]) for r in payload["runs"]) == sorted((arm, s) for arm in ARMS for s in (0, 1))
    assert payload["command"].count("then, after it was cut short") == 1
    third = search.run(tmp_path, quick=True, seeds=3, runner=_Recorder(), resume=True)
    assert third["command"] == payload["command"], "resumed again with the same command: said once"
    other = tmp_path / "other"
    other.mkdir()
    (other / "search.json").write_text((tmp_path / "search-quick.json").read_text())  # a --quick run's results
    with pytest.raises(BenchError, match="sizes differ"):
        search.run(other, quick=False, seeds=2, runner=again, resume=True)

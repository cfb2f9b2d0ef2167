"""The sweep's live view names the best trial by the rule ``hpo status`` ranks trials with."""

from __future__ import annotations

import random

from hpo.tune.console import SweepConsole
from hpo.core.results import TrialRecord


class Trial:
    def __init__(self, trial_id: str):
        self.trial_id, self.status, self.config, self.last_result = trial_id, "RUNNING", {"learning_rate": 0.1}, {}

    def __str__(self) -> str:
        return self.trial_id


def status_best(rounds: dict[str, list[dict]], metric: str, mode: str) -> tuple[float, int, str] | None:
    """The best (value, round, trial) as ``hpo status`` ranks them: best value, then trial folder order."""
    found = [(*b, t) for t in sorted(rounds) if (b := TrialRecord(t, t, None, {}, "RUNNING", rounds[t]).best(metric, mode))]
    if not found:
        return None
    value = max(f[0] for f in found) if mode == "max" else min(f[0] for f in found)
    return next(f for f in found if f[0] == value)


def test_the_best_so_far_is_the_trial_hpo_status_ranks_first_ties_included():
    rng = random.Random(0)
    for mode in ("max", "min"):
        view = SweepConsole("s", "val_accuracy", mode, 40, "disabled", ["learning_rate"])
        trials = [Trial(f"t{i:02d}") for i in range(40)]
        rounds: dict[str, list[dict]] = {}
        for step in range(300):
            trial = rng.choice(trials)
            rnd = len(rounds.get(trial.trial_id, [])) + 1
            result = {"training_iteration": rnd, "val_accuracy": rng.choice([0.5, 0.6, 0.7, 0.75])}
            if rng.random() < 0.05:  # a failure's placeholder value never counts
                result["failure"] = "diverged"
            rounds.setdefault(trial.trial_id, []).append(result)
            view.on_trial_result(step, trials, trial, result)
            best = view._best()
            assert (best and (best[0], best[1], best[2].trial_id)) == status_best(rounds, "val_accuracy", mode)

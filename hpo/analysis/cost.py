"""What a sweep cost: trial-seconds, CPU- and GPU-seconds (``resources`` x time), the share early
stopping saved against running every trial to its planned rounds, and the promotion retrain's share.
Read from the trials' own reports (Tune's ``time_total_s``), without starting Ray."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any

from hpo.core.results import PENDING, RUNNING, Sweep, TrialRecord


@dataclass(frozen=True)
class TrialCost:
    trial_id: str
    seconds: float  # Tune's time_total_s: the trial function's time, start-up, evaluation and checkpoints included
    rounds: int
    planned: int
    full_seconds: float  # estimated: the same trial run to its planned rounds
    running: bool = False


@dataclass(frozen=True)
class SweepCost:
    trials: list[TrialCost]
    cpu: float  # per trial (resources.cpu)
    gpu: float  # per trial (resources.gpu)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.trials)

    @property
    def full_seconds(self) -> float:
        return sum(t.full_seconds for t in self.trials)

    @property
    def saved_share(self) -> float:
        """The share of the trial-seconds early stopping (ASHA, one class, patience) did not spend."""
        full = self.full_seconds
        return 1 - self.seconds / full if full > 0 else 0.0


def trial_cost(t: TrialRecord) -> TrialCost:
    rows = [r for r in t.rounds if r.get("time_total_s") is not None]
    seconds = max((float(r["time_total_s"]) for r in rows), default=0.0)
    done, planned = t.rounds_done, t.rounds_planned or t.rounds_done
    per_round = [float(r.get("time_this_iter_s") or 0.0) for r in rows]
    # the first round carries the trial's start-up: later rounds say what one more round costs
    typical = (sum(per_round[1:]) / len(per_round[1:])) if len(per_round) > 1 else (per_round[0] if per_round else 0.0)
    # A diverged trial would have ended there anyway; a running one has not been stopped (yet): no saving claimed.
    missing = 0 if t.failure or t.outcome in (RUNNING, PENDING) else max(0, planned - done)
    return TrialCost(t.trial_id, seconds, done, planned, seconds + missing * typical, t.outcome in (RUNNING, PENDING))


def sweep_cost(sweep: Sweep) -> SweepCost:
    return SweepCost([trial_cost(t) for t in sweep.trials if t.rounds], sweep.spec.resources.cpu, sweep.spec.resources.gpu)


def retrain_share(cost: SweepCost, retrain: dict[str, Any] | None) -> float | None:
    """The promotion retrain's share of all the compute time (the sweep's trial-seconds plus the retrain's)."""
    if not retrain or retrain.get("seconds") is None:
        return None
    total = cost.seconds + retrain["seconds"]
    return retrain["seconds"] / total if total > 0 else None


def summary(cost: SweepCost, retrain: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures for the card and provenance.json."""
    out: dict[str, Any] = {
        "trials": len(cost.trials),
        "resources_per_trial": {"cpu": cost.cpu, "gpu": cost.gpu},
        "trial_seconds": round(cost.seconds, 1),
        "cpu_seconds": round(cost.seconds * cost.cpu, 1),
        "gpu_seconds": round(cost.seconds * cost.gpu, 1),
        "full_run_trial_seconds": round(cost.full_seconds, 1),
        "early_stopping_saved": round(cost.saved_share, 4),
        "per_trial": [
            {"trial_id": t.trial_id, "seconds": round(t.seconds, 1), "gpu_seconds": round(t.seconds * cost.gpu, 1), "rounds": t.rounds, "planned": t.planned}
            for t in cost.trials
        ],
    }
    if retrain and retrain.get("seconds") is not None:
        share = retrain_share(cost, retrain)
        out["retrain"] = {**retrain, "share": round(share, 4) if share is not None else None}
    return out


def describe(cost: SweepCost, retrain: dict[str, Any] | None = None) -> list[str]:
    """Lines for ``hpo status`` and ``hpo promote``."""
    if not cost.trials:
        return ["cost: no trial has reported a round yet"]
    per = [t.seconds for t in cost.trials]
    running = sum(t.running for t in cost.trials)
    lines = [
        ("cost so far" + f" ({running} trial(s) still running)" if running else "cost") + f": {cost.seconds:.0f} trial-s over {len(per)} trials ({cost.seconds * cost.cpu:.0f} CPU-s, {cost.seconds * cost.gpu:.0f} GPU-s "
        f"at {cost.cpu:g} CPU / {cost.gpu:g} GPU per trial); per trial {min(per):.0f}-{max(per):.0f} s, median {median(per):.0f} s",
        f"early stopping saved {cost.saved_share:.0%} of the trial-seconds against running every trial to its planned rounds "
        f"(estimated {cost.full_seconds:.0f} trial-s)",
    ]
    share = retrain_share(cost, retrain)
    if share is not None:
        gpu = f", {retrain['seconds']:.0f} GPU-s" if retrain.get("device") == "cuda" else ""
        lines.append(f"promotion retrain: {retrain['seconds']:.0f} s on {retrain.get('device', '?')}{gpu}, {share:.0%} of the sweep's and retrain's seconds")
    return lines

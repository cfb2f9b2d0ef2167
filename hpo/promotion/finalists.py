"""Finalists over seeds: before retraining, the sweep's best ``top_k`` configurations are trained again
with ``seeds`` new training seeds each, to the round at which each reached its best, as one Ray Tune run
with the sweep's trainable; the configuration with the best mean validation value is the one retrained.

A single run's score moves by about a point with the seed alone, so the sweep's best trial is partly the
luckiest one; its own value is left out of the mean for that reason (it was selected for being high).

The runs live in ``EXPERIMENT/hpo/finalists/``: ``plan.json`` (the configurations, seeds and rounds) and
Ray Tune experiments named ``run-<hash of the runs they hold>``. Rerunning ``hpo promote`` reuses every
finalist trial that reached its round (in any earlier run), continues an interrupted run from its
checkpoints, and starts a new run only for what is still missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpo.analysis.finalists import (
    PLAN,
    Finalist,
    Outcome,
    choose,
    collect,
    config_key,
    finished_curves,
    print_table,
    root,
)
from hpo.core.errors import Interrupted
from hpo.core.results import PENDING, RUNNING, Sweep, TrialRecord
from hpo.core.spec import FifoScheduler, SweepSpec
from hpo.core.storage import Location


@dataclass(frozen=True)
class Run:
    """One finalist trial: a configuration of the sweep with one new training seed, to ``rounds``."""

    rank: int
    trial_id: str  # the sweep trial the configuration comes from
    params: dict[str, Any]
    rounds: int
    seed: int

    @property
    def config(self) -> dict[str, Any]:
        """Tune's config for the trial: the sweep's sampled values plus the training seed."""
        return {**self.params, "seed": self.seed}

    @property
    def key(self) -> str:
        return config_key(self.config, self.rounds)


# ------------------------------------------------------------------------------------------ the plan
def candidates(sweep: Sweep, top_k: int) -> list[tuple[TrialRecord, float, int]]:
    """The sweep's best ``top_k`` distinct configurations among trials that ended without a failure (and, with a
    latency objective and gate, whose latency meets the gate)."""
    out, seen = [], set()
    for trial, value, rnd in sweep.ranked(within_budget=True):
        if trial.outcome in (RUNNING, PENDING) or trial.failure:
            continue
        key = json.dumps(trial.params, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append((trial, value, rnd))
        if len(out) == top_k:
            break
    return out


def plan(sweep: Sweep) -> list[Finalist]:
    f = sweep.spec.promotion.finalists
    seeds = [sweep.spec.training.seed + i + 1 for i in range(f.seeds)]  # new: the sweep trained with training.seed
    return [Finalist(i + 1, t, v, rnd, seeds) for i, (t, v, rnd) in enumerate(candidates(sweep, f.top_k))]


def runs_of(finalists: list[Finalist]) -> list[Run]:
    return [Run(f.rank, f.trial.trial_id, f.trial.params, f.rounds, s) for f in finalists for s in f.seeds]


def missing_runs(finalists: list[Finalist]) -> list[Run]:
    """The runs with no value yet (neither finished nor failed)."""
    return [r for f in finalists for r in runs_of([f]) if r.seed not in f.values]


def _plan_record(sweep: Sweep, finalists: list[Finalist]) -> dict[str, Any]:
    return {
        "metric": sweep.spec.metric,
        "mode": sweep.spec.mode,
        "finalists": [{"rank": f.rank, "trial_id": f.trial.trial_id, "params": f.trial.params, "rounds": f.rounds, "sweep_value": f.sweep_value, "seeds": f.seeds} for f in finalists],
    }


def run_finalists(sweep: Sweep, prepare: Callable[[], Any], address: str | None, echo: Callable[[str], None] = print) -> Outcome | None:
    """Re-run the finalists (or reuse their finished runs), print the table, return the choice. None when
    ``promotion.finalists`` is off or only one configuration could be re-run with one seed."""
    spec = sweep.spec
    if not spec.promotion.finalists.enabled:
        return None
    finalists = plan(sweep)
    folder = root(sweep.path)
    record = _plan_record(sweep, finalists)
    folder.child(PLAN).write_json(record)
    collect(finalists, finished_curves(folder, spec.metric))
    runs = runs_of(finalists)
    todo = missing_runs(finalists)
    seeds = finalists[0].seeds
    echo(
        f"finalists: the best {len(finalists)} configuration(s) re-run with {len(seeds)} new training seed(s) {seeds} each, "
        f"to their winning round; {len(runs) - len(todo)} of {len(runs)} runs already done"
    )
    if todo:
        _run(sweep, prepare(), finalists, folder, address, echo)
        collect(finalists, finished_curves(folder, spec.metric))
        missing = missing_runs(finalists)
        if missing:
            echo(f"warning: {len(missing)} finalist run(s) did not finish (see {folder}); the means use the runs that did")
    outcome = Outcome(spec.metric, spec.mode, finalists, choose(finalists, spec.mode))
    print_table(outcome, echo)
    return outcome


def without_early_stopping(spec: SweepSpec) -> SweepSpec:
    """The sweep's spec with no scheduler stopping a run and no patience: each finalist run ends at its round."""
    s = spec.scheduler
    return spec.model_copy(update={"scheduler": FifoScheduler(type="fifo", max_rounds=s.max_rounds, grace_period=s.grace_period)})


def _run(sweep: Sweep, prepared: Any, finalists: list[Finalist], folder: Location, address: str | None, echo: Callable[[str], None]) -> None:
    """Finish any interrupted finalist run from its checkpoints, then run what is still missing, each run to
    its round, with the sweep's trainable and LR schedule and without early stopping."""
    from hpo.tune.fixed import FixedRun, continue_runs, run_fixed, with_ray

    spec = sweep.spec
    fixed = without_early_stopping(spec)
    with with_ray(address):
        if not continue_runs(folder, fixed, prepared.data, prepared.source, echo):
            raise Interrupted(f"the finalists' run was interrupted; its state is saved in {folder}: rerun the same `hpo promote` command to continue it")
        collect(finalists, finished_curves(folder, spec.metric))
        todo = missing_runs(finalists)
        if not todo:
            return
        name = "run-" + hashlib.sha256("\n".join(r.key for r in todo).encode()).hexdigest()[:10]
        while folder.child(name).exists():
            name += "-again"
        run = FixedRun(folder.child(name), [r.config for r in todo], [r.rounds for r in todo])
        if not run_fixed(run, fixed, prepared.data, prepared.source, echo):
            raise Interrupted(f"the finalists' run was interrupted; its state is saved in {run.folder}: rerun the same `hpo promote` command to continue it")

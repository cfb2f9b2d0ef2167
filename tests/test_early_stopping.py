"""Early stopping beyond Ray's ASHA: trials that still predict one class are stopped at a rung even
when they are the first there, and ``patience`` ends a trial whose metric stopped improving."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from hpo.core.results import CONVERGED, STOPPED, load_sweep
from hpo.tune.scheduler import SweepASHA, make_scheduler
from hpo.core.spec import AshaScheduler, parse_spec
from tests.conftest import cli_env, run_cli, tiny_spec, write_spec


@pytest.mark.parametrize("max_rounds,grace,rf", [(12, 2, 3), (12, 2, 2), (6, 2, 2), (8, 2, 2), (4, 1, 2), (12, 2, 1.5), (9, 3, 3)])
def test_spec_rungs_are_the_rounds_rays_asha_compares_at(max_rounds, grace, rf):
    ray_asha = ASHAScheduler(time_attr="training_iteration", metric="m", mode="max", max_t=max_rounds, grace_period=grace, reduction_factor=rf)
    milestones = sorted(m for m, _ in ray_asha._brackets[0]._rungs)
    # Ray compares at the first round >= each milestone; the one at max_rounds stops every trial anyway
    expected = sorted({next(r for r in range(1, max_rounds + 1) if r >= m) for m in milestones if m < max_rounds})
    assert AshaScheduler(max_rounds=max_rounds, grace_period=grace, reduction_factor=rf).rungs() == expected


def _feed(scheduler, reports):
    """Results in arrival order, [(trial, round, accuracy, top_class_share)] -> the decisions."""
    scheduler.set_search_properties("val_accuracy", "max")
    trials, out = {}, []
    for tid, rnd, acc, share in reports:
        if tid not in trials:
            trials[tid] = SimpleNamespace(trial_id=tid)
            scheduler.on_trial_add(None, trials[tid])
        result = {"training_iteration": rnd, "val_accuracy": acc, "val_top_class_share": share}
        out.append(scheduler.on_trial_result(None, trials[tid], result))
    return out


def test_first_trial_at_a_rung_that_predicts_one_class_is_stopped_only_with_the_rule():
    spec = AshaScheduler(max_rounds=12, grace_period=2, reduction_factor=2, stop_single_class=True)
    reports = [("a", 1, 0.505, 1.0), ("a", 2, 0.505, 1.0), ("b", 1, 0.70, 0.6), ("b", 2, 0.78, 0.55)]
    plain = _feed(make_scheduler(parse_spec_with(spec.model_copy(update={"stop_single_class": False}))), reports)
    # Ray's ASHA: the first trial at rung 2 goes on, whatever its value
    assert plain == [TrialScheduler.CONTINUE] * 4
    ours = make_scheduler(parse_spec_with(spec))
    assert isinstance(ours, SweepASHA)
    assert _feed(ours, reports) == [TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.CONTINUE, TrialScheduler.CONTINUE]
    assert ours.single_class_stops == ["a"]
    # off the rungs the rule does not apply, and a trial that learned is judged by ASHA alone
    assert _feed(make_scheduler(parse_spec_with(spec)), [("c", 3, 0.5, 1.0)]) == [TrialScheduler.CONTINUE]
    judged = _feed(make_scheduler(parse_spec_with(spec)), [("d", 2, 0.80, 0.5), ("e", 2, 0.70, 0.6)])
    assert judged == [TrialScheduler.CONTINUE, TrialScheduler.STOP]


def parse_spec_with(scheduler: AshaScheduler):
    from pathlib import Path

    raw = tiny_spec(Path("/nonexistent"))
    raw["scheduler"] = scheduler.model_dump()
    return parse_spec(raw)


def _study(path, name):
    storage = JournalStorage(JournalFileBackend(str(path / "hpo" / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def _frozen_sweep(tmp_path, name, scheduler):
    """Trials with a learning rate too small to move the model: every round predicts one class."""
    raw = tiny_spec(tmp_path / "runs", name=name)
    raw["data"].update(train_size=400, test_size=100)
    raw["training"].update(max_length=32, epochs=2)
    raw["search_space"] = {"learning_rate": {"type": "choice", "values": [1.0e-7]}}
    raw["searcher"] = {"type": "random", "seed": 0}
    raw["scheduler"] = scheduler
    raw["budget"] = {"num_trials": 2, "max_concurrent": 1}
    raw["tracking"]["mode"] = "disabled"
    spec_file = write_spec(tmp_path / f"{name}.yaml", raw)
    result = run_cli(["sweep", str(spec_file)], cli_env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stdout[-4000:]
    return load_sweep(tmp_path / "runs" / name), result.stdout


@pytest.mark.slow
def test_a_sweep_stops_trials_that_learned_nothing_at_the_first_rung(tmp_path):
    sweep, stdout = _frozen_sweep(tmp_path, "frozen", {"type": "asha", "max_rounds": 4, "grace_period": 1, "reduction_factor": 2, "stop_single_class": True})
    assert [t.outcome for t in sweep.trials] == [STOPPED, STOPPED], [(t.trial_id, t.outcome, t.error) for t in sweep.trials]
    for t in sweep.trials:
        # both equal: ASHA alone would have let both go on (a value equal to the cutoff is not below it)
        assert t.rounds_done == 1 and t.rounds_planned == 4
        assert t.rounds[-1]["val_top_class_share"] == 1.0
    assert [s.state for s in _study(sweep.path, "frozen").trials] == [optuna.trial.TrialState.PRUNED] * 2
    # a sweep that stopped everything before anything learned says so, and what to change
    assert "every trial still predicted one class at round 1" in " ".join(stdout.split())


@pytest.mark.slow
def test_patience_ends_a_trial_that_stopped_improving_as_converged(tmp_path):
    sweep, stdout = _frozen_sweep(tmp_path, "patient", {"type": "fifo", "max_rounds": 4, "grace_period": 1, "patience": 1})
    study = _study(sweep.path, "patient")
    assert "predicted one class" not in stdout
    for t in sweep.trials:
        assert t.outcome == CONVERGED, (t.trial_id, t.outcome, t.error)
        # round 2 did not beat round 1: one round without improvement ends it, two rounds before its budget
        assert t.rounds_done == 2 and t.rounds_planned == 4
        assert [r["converged"] for r in t.rounds] == [False, True]
        assert t.best("val_accuracy", "max") == (t.rounds[0]["val_accuracy"], 1)
    # converged is a finished trial for TPE, valued at its best round, not a pruned one
    assert [s.state for s in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [s.value for s in study.trials] == [pytest.approx(t.rounds[0]["val_accuracy"]) for t in sweep.trials]


class _Controller:
    """What SweepASHA reads of Tune's controller: the live trials, whether every trial was created,
    and ``stop_trial`` (which, like Tune's, tells the scheduler the trial completed)."""

    def __init__(self, scheduler, all_created=True):
        self.scheduler, self.stopped = scheduler, []
        self.search_alg = SimpleNamespace(is_finished=lambda: all_created)
        self.trials: dict[str, SimpleNamespace] = {}

    def add(self, tid, status="RUNNING"):
        self.trials[tid] = SimpleNamespace(trial_id=tid, status=status)
        self.scheduler.on_trial_add(self, self.trials[tid])
        return self.trials[tid]

    def get_live_trials(self):
        return [t for t in self.trials.values() if t.status != "TERMINATED"]

    def report(self, tid, rnd, acc, share=0.5):
        result = {"training_iteration": rnd, "val_accuracy": acc, "val_top_class_share": share}
        return self.scheduler.on_trial_result(self, self.trials[tid], result)

    def complete(self, tid):
        self.scheduler.on_trial_complete(self, self.trials[tid], {})
        self.trials[tid].status = "TERMINATED"

    def stop_trial(self, trial):
        self.stopped.append(trial.trial_id)
        self.scheduler.on_trial_complete(self, trial, {})
        trial.status = "TERMINATED"


def _asha(backfill=True, stop_single_class=False):
    spec = AshaScheduler(max_rounds=6, grace_period=2, reduction_factor=2, stop_single_class=stop_single_class, backfill=backfill)
    scheduler = make_scheduler(parse_spec_with(spec))
    scheduler.set_search_properties("val_accuracy", "max")
    return scheduler


def test_backfill_keeps_a_stopped_trial_on_in_an_idle_slot_until_the_last_other_trial_ends():
    ctl = _Controller(_asha())
    for tid in "ab":
        ctl.add(tid)
    assert ctl.report("a", 2, 0.80) == TrialScheduler.CONTINUE  # first at rung 2
    # below a at rung 2: ASHA stops b, but every trial has started and a still runs, so b goes on
    assert ctl.report("b", 2, 0.60) == TrialScheduler.CONTINUE
    assert ctl.scheduler.backfilled == ["b"]
    assert ctl.report("b", 3, 0.70) == TrialScheduler.CONTINUE and ctl.report("b", 4, 0.50) == TrialScheduler.CONTINUE
    # a ends: b is stopped at once, mid-round, so the sweep ends when it would have without backfill
    ctl.complete("a")
    assert ctl.stopped == ["b"]


def test_backfill_only_once_every_trial_started_only_beside_a_running_trial_and_never_for_one_class():
    ctl = _Controller(_asha(), all_created=False)  # more trials to come: the slot goes to one of them
    ctl.add("a"), ctl.add("b")
    ctl.report("a", 2, 0.80)
    assert ctl.report("b", 2, 0.60) == TrialScheduler.STOP

    ctl = _Controller(_asha())  # nothing else running: stopping b idles nothing
    ctl.add("a", status="TERMINATED"), ctl.add("b")
    ctl.scheduler.on_trial_result(ctl, ctl.trials["a"], {"training_iteration": 2, "val_accuracy": 0.8, "val_top_class_share": 0.5})
    assert ctl.report("b", 2, 0.60) == TrialScheduler.STOP

    ctl = _Controller(_asha(stop_single_class=True))  # learned nothing: stopped by the one-class rule as before
    ctl.add("a"), ctl.add("b")
    ctl.report("a", 2, 0.80)
    assert ctl.report("b", 2, 0.50, share=1.0) == TrialScheduler.STOP and ctl.scheduler.backfilled == []

    ctl = _Controller(_asha(backfill=False))
    ctl.add("a"), ctl.add("b")
    ctl.report("a", 2, 0.80)
    assert ctl.report("b", 2, 0.60) == TrialScheduler.STOP


def test_a_backfill_trial_stops_at_its_next_round_once_it_runs_alone():
    ctl = _Controller(_asha())
    ctl.add("a"), ctl.add("b")
    ctl.report("a", 2, 0.80)
    ctl.report("b", 2, 0.60)
    ctl.trials["a"].status = "TERMINATED"  # a ended without the scheduler hearing of it (e.g. removed)
    assert ctl.report("b", 3, 0.70) == TrialScheduler.STOP


def _hyperband_decisions(brackets: int) -> list[str]:
    """Twelve trials reach round 1, each worse than every trial before it."""
    import numpy as np

    from hpo.core.spec import HyperbandScheduler

    np.random.seed(0)  # Ray places each new trial in a bracket at random
    spec = HyperbandScheduler(type="hyperband", max_rounds=8, grace_period=1, reduction_factor=2, brackets=brackets)
    scheduler = make_scheduler(parse_spec_with(spec))
    scheduler.set_search_properties("val_accuracy", "max")
    ctl = _Controller(scheduler)
    for i in range(12):
        ctl.add(f"t{i}")
    return [ctl.report(f"t{i}", 1, 0.9 - i / 100) for i in range(12)][1:]


def test_hyperband_brackets_judge_trials_at_different_first_rounds():
    from hpo.core.errors import SpecError

    # one bracket is ASHA: every trial worse than all before it is stopped at the first rung
    assert set(_hyperband_decisions(1)) == {TrialScheduler.STOP}
    # two brackets: the trials placed in the second one are not judged before round 2, so some go on
    decisions = _hyperband_decisions(2)
    assert TrialScheduler.STOP in decisions and TrialScheduler.CONTINUE in decisions
    raw = tiny_spec(Path("/nonexistent"))
    raw["scheduler"] = {"type": "hyperband", "max_rounds": 4, "grace_period": 2, "reduction_factor": 2, "brackets": 2}
    with pytest.raises(SpecError) as err:  # bracket 2 would first judge at round 4: not below max_rounds
        parse_spec(raw)
    assert "scheduler" in str(err.value) and "brackets (2)" in str(err.value) and "max_rounds (4)" in str(err.value)

"""Early stopping for a sweep: Ray Tune's asynchronous successive halving (ASHA) plus one rule for
classifiers.

ASHA compares a trial reaching a rung with the trials that reached that rung before it, so the first
trial at each rung always goes on, however bad it is. A trial that still puts (almost) every
validation example into one class has learned nothing yet; ``SweepASHA`` stops it at the rung even
when it is the first one there. The rest of the decision is Ray's.

Backfill: with a fixed number of trials, the end of a sweep is one long trial running on alone while
the other slots stand idle (ASHA stopped their trials and no trial is left to start). From the moment
every trial has started, a trial that ASHA would stop at a rung while another trial still runs goes
on instead, in a slot that would otherwise idle; once no other trial is left running it is stopped,
so the sweep never ends later because of it. A trial that learned nothing (the one-class rule) is
stopped as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from hpo.core.spec import AshaScheduler, FifoScheduler, HyperbandScheduler, MedianScheduler, SweepSpec
from hpo.tune._internals import asha_time_attr, count_asha_stop
from trainables.report import ITERATION, RoundReport


class SweepASHA(AsyncHyperBandScheduler):
    def __init__(self, *, rungs: list[int], stop_single_class: bool, backfill: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self._rung_rounds = frozenset(rungs)
        self._stop_single_class = stop_single_class
        self._backfill = backfill
        self.single_class_stops: list[str] = []
        self.backfilled: list[str] = []  # trials kept on by backfill, in the order they were

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        rnd = result.get(asha_time_attr(self))
        if trial.trial_id in self.backfilled:
            return TrialScheduler.STOP if not _others_running(tune_controller, trial, self.backfilled) else TrialScheduler.CONTINUE
        report = RoundReport.from_result(result)
        one_class = self._stop_single_class and rnd in self._rung_rounds and report.one_class
        if one_class and action == TrialScheduler.CONTINUE:
            count_asha_stop(self)
            self.single_class_stops.append(trial.trial_id)
            return TrialScheduler.STOP
        if (
            action == TrialScheduler.STOP
            and self._backfill
            and not one_class
            and rnd in self._rung_rounds  # a rung decision, not the end of the trial's rounds
            and report.failure is None
            and _all_started(tune_controller)
            and _others_running(tune_controller, trial, self.backfilled)
        ):
            self.backfilled.append(trial.trial_id)
            return TrialScheduler.CONTINUE
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._end_backfill(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_error(tune_controller, trial)
        self._end_backfill(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_remove(tune_controller, trial)
        self._end_backfill(tune_controller, trial)

    def _end_backfill(self, tune_controller: Any, ended: Any) -> None:
        """When the last trial that is not backfill ends, stop the backfill trials still running."""
        if tune_controller is None or ended.trial_id in self.backfilled or not _all_started(tune_controller):
            return
        live = [t for t in tune_controller.get_live_trials() if t is not ended and t.status in _LIVE]
        if any(t.trial_id not in self.backfilled for t in live):
            return
        for t in live:
            tune_controller.stop_trial(t)  # mid-round: the sweep does not wait for it


_LIVE = ("RUNNING", "PENDING", "PAUSED")


def _all_started(tune_controller: Any) -> bool:
    """Every trial of the sweep has been created, and none waits for a slot."""
    if tune_controller is None:
        return False
    return tune_controller.search_alg.is_finished() and not any(t.status == "PENDING" for t in tune_controller.get_live_trials())


def _others_running(tune_controller: Any, trial: Any, backfilled: list[str]) -> bool:
    """Another trial that is not backfill is still running (so stopping ``trial`` would idle its slot)."""
    if tune_controller is None:
        return False
    return any(t is not trial and t.status == "RUNNING" and t.trial_id not in backfilled for t in tune_controller.get_live_trials())


# One builder per scheduler class of the spec (``hpo.core.spec.SCHEDULERS``): a new scheduler is its spec
# class there and its builder here.
_BUILDERS: dict[type, Callable[[Any], TrialScheduler]] = {}


def _builds(spec_class: type) -> Callable[[Callable[[Any], TrialScheduler]], Callable[[Any], TrialScheduler]]:
    def add(fn: Callable[[Any], TrialScheduler]) -> Callable[[Any], TrialScheduler]:
        _BUILDERS[spec_class] = fn
        return fn

    return add


@_builds(AshaScheduler)
def _asha(s: AshaScheduler) -> TrialScheduler:
    return SweepASHA(
        rungs=s.rungs(),
        stop_single_class=s.stop_single_class,
        backfill=s.backfill,
        time_attr=ITERATION,
        max_t=s.max_rounds,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )


@_builds(FifoScheduler)
def _fifo(s: FifoScheduler) -> TrialScheduler:
    return FIFOScheduler()


@_builds(MedianScheduler)
def _median(s: MedianScheduler) -> TrialScheduler:
    from ray.tune.schedulers import MedianStoppingRule

    # The metric and mode come from the tuner's config; rounds, not seconds, are the time axis.
    return MedianStoppingRule(time_attr=ITERATION, grace_period=s.grace_period, min_samples_required=s.min_samples_required)


@_builds(HyperbandScheduler)
def _hyperband(s: HyperbandScheduler) -> TrialScheduler:
    return AsyncHyperBandScheduler(
        time_attr=ITERATION, max_t=s.max_rounds, grace_period=s.grace_period, reduction_factor=s.reduction_factor, brackets=s.brackets
    )


def make_scheduler(spec: SweepSpec) -> TrialScheduler:
    """The Ray scheduler the spec's ``scheduler:`` section asks for."""
    return _BUILDERS[type(spec.scheduler)](spec.scheduler)

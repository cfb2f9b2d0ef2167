"""Early stopping for a sweep: Ray Tune's asynchronous successive halving (ASHA) plus one rule for
classifiers.

ASHA compares a trial reaching a rung with the trials that reached that rung before it, so the first
trial at each rung always goes on, however bad it is. A trial that still puts (almost) every
validation example into one class has learned nothing yet; ``SweepASHA`` stops it at the rung even
when it is the first one there. The rest of the decision is Ray's.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from hpo.spec import SHARE_KEY, SINGLE_CLASS_SHARE, SweepSpec


class SweepASHA(AsyncHyperBandScheduler):
    def __init__(self, *, rungs: list[int], stop_single_class: bool, **kwargs: Any):
        super().__init__(**kwargs)
        self._rung_rounds = frozenset(rungs)
        self._stop_single_class = stop_single_class
        self.single_class_stops: list[str] = []

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if (
            action == TrialScheduler.CONTINUE
            and self._stop_single_class
            and result.get(self._time_attr) in self._rung_rounds
            and result.get(SHARE_KEY, 0.0) >= SINGLE_CLASS_SHARE
        ):
            self._num_stopped += 1
            self.single_class_stops.append(trial.trial_id)
            return TrialScheduler.STOP
        return action


def make_scheduler(spec: SweepSpec) -> Any:
    s = spec.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    return SweepASHA(
        rungs=s.rungs(),
        stop_single_class=s.stop_single_class,
        time_attr="training_iteration",
        max_t=s.max_rounds,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )

"""The Optuna TPE searcher as Ray Tune sees it, persisted in the experiment folder.

Two things differ from Ray's stock ``OptunaSearch``:

* a trial that ASHA stopped early is told to the study as PRUNED (with its learning curve as
  intermediate values), not as a completed trial, so TPE and optuna-dashboard see what happened;
* a completed trial's value is its best round's value: the same rule promotion uses to pick the winner
  (a trial that ended on ``patience`` counts as completed: it converged, it was not cut short);
* a trial that ended with a ``failure`` (NaN loss, out of GPU memory) is told as FAIL.

The study lives in an Optuna journal, ``EXPERIMENT/hpo/optuna.journal`` (``hpo.journal``: mirrored from
the driver's disk when the sweep is in object storage), so ``optuna-dashboard`` can read it while the
sweep runs and after, and ``hpo resume`` restores it.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from hpo.journal import start_journal
from hpo.spec import improves
from hpo.storage import Location


class SweepSearch(OptunaSearch):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._best: dict[str, float] = {}

    def _track(self, trial_id: str, result: dict) -> None:
        value = result.get(self.metric)
        if value is not None:
            if improves(value, self._best.get(trial_id), self.mode):
                self._best[trial_id] = value

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if "failure" in result:  # a failed trial's last report carries no measured value
            return
        super().on_trial_result(trial_id, result)
        self._track(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.trial import TrialState

        if error or not result or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        try:
            if "failure" in result:  # diverged or out of memory: a failure for TPE, not a value
                self._ot_study.tell(ot_trial, None, state=TrialState.FAIL)
                return
            # Tune hands a trial's last result to on_trial_complete only: record it as a round too.
            step = result.get("training_iteration")
            seen = self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values
            if step is not None and step not in seen and result.get(self.metric) is not None:
                ot_trial.report(result[self.metric], step)
            self._track(trial_id, result)
            if result.get("round", 0) < result.get("rounds_planned", 0) and not result.get("converged"):  # stopped by ASHA
                self._ot_study.tell(ot_trial, None, state=TrialState.PRUNED)
            else:
                self._ot_study.tell(ot_trial, self._best[trial_id])
        finally:
            self._completed_trials.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """Tune saves the searcher with the experiment state: the stored journal goes with it."""
        super().save(checkpoint_path)
        journal = self.__dict__.get("journal")  # absent in a searcher restored from an older hpo
        if journal is not None:
            journal.sync()

    def restore(self, checkpoint_path: str) -> None:
        """After a driver crash: trials the study handed out after the last saved searcher state never
        reached Tune; mark them FAIL so the study (and the dashboard) holds no phantom running trials."""
        from optuna.trial import TrialState

        super().restore(checkpoint_path)
        known = {t.number for t in self._ot_trials.values()}
        storage = self._ot_study._storage
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in known:
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


def make_searcher(spec: Any, experiment: Location | None) -> Any:
    """TPE (or random, for baselines) over the spec's space, limited to ``max_concurrent`` at a time;
    its study is journalled beside the sweep at ``experiment`` (in memory only when None)."""
    from ray.tune.search import ConcurrencyLimiter

    from hpo.space import make_sampler, to_optuna

    from optuna.storages import JournalStorage

    journal = start_journal(experiment) if experiment is not None else None
    search = SweepSearch(
        space=to_optuna(spec.search_space),
        metric=spec.metric,
        mode=spec.mode,
        sampler=make_sampler(spec.searcher),
        storage=JournalStorage(journal) if journal is not None else None,
        study_name=spec.name,
    )
    search.journal = journal  # pickled with the searcher, as the same object as the study's backend
    return ConcurrencyLimiter(search, max_concurrent=spec.budget.max_concurrent)

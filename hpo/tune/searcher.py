"""The Optuna TPE searcher as Ray Tune sees it, persisted in the experiment folder.

What differs from Ray's stock ``OptunaSearch``:

* a trial that ASHA stopped early is told to the study as PRUNED (with its learning curve as
  intermediate values), not as a completed trial, so TPE and optuna-dashboard see what happened;
* a completed trial's value is its best round's value: the same rule promotion uses to pick the winner
  (a trial that ended on ``patience`` counts as completed: it converged, it was not cut short); with several
  ``objectives`` the study is multi-objective and a trial's values are each objective's at the round that is
  best for the first one;
* a trial that ended with a ``failure`` (NaN loss, out of GPU memory) is told as FAIL;
* a warm-started sweep's study holds the earlier sweeps' trials before it draws, and their best configurations
  are handed out first (``start_from``; ``hpo.core.warm`` says what is taken).

The study lives in an Optuna journal, ``EXPERIMENT/hpo/optuna.journal`` (``hpo.core.journal``: mirrored from
the driver's disk when the sweep is in object storage, stored with Tune's state), so ``optuna-dashboard`` can read it while the
sweep runs and after, and ``hpo resume`` restores it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from hpo.core.journal import start_journal
from hpo.core.storage import JOURNAL_FILE, META_DIR, Location
from hpo.tune.upload_order import store_with_state
from hpo.tune._internals import (
    optuna_parts,
    set_live_trials,
    set_trials_created,
    study_trial,
)
from trainables.report import FAILED, STOPPED, BestSoFar, RoundReport, outcome

if TYPE_CHECKING:
    from hpo.core.warm import WarmStart

# A study trial that never ran (handed out just before the driver stopped and never recorded by Tune, or drawn again
# after a resume) is failed with this user attribute saying which (Optuna keeps every trial it handed out; the sweep's
# trials are Tune's).
NEVER_RAN = "never_ran"
NEVER_RAN_WHY = "handed out just before the driver stopped; Tune never recorded it, so it did not run"
NEVER_RAN_REDRAWN = "drawn again after a resume: its configuration already runs as a trial Tune recorded"


class SweepSearch(OptunaSearch):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._best: BestSoFar | None = None  # set with the metric and mode (Tune may set them after __init__)
        self._at_best: dict[str, list[float | None]] = {}  # several objectives: the others' values at each trial's best round

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(metric, mode) of each objective, the sweep's metric first (several: a multi-objective study)."""
        if isinstance(self.metric, list):
            return list(zip(self.metric, self.mode))
        return [(self.metric, self.mode)]

    def _track(self, trial_id: str, result: dict) -> None:
        metric, mode = self.objectives[0]
        if not isinstance(self._best, BestSoFar):  # unset, or a plain dict in a searcher saved by an older hpo
            old, self._best = self._best or {}, BestSoFar(metric, mode)
            self._best.values.update(old)
        if self._best.note(trial_id, result) and len(self.objectives) > 1:
            self.__dict__.setdefault("_at_best", {})[trial_id] = [result.get(m) for m, _ in self.objectives[1:]]

    def _values(self, trial_id: str, result: dict) -> float | list[float | None] | None:
        """What the study is told of a completed trial: each objective's value at the round best for the first
        one (the others from ``result`` when that round was not seen, after a resume)."""
        best = self._best.get(trial_id)
        if len(self.objectives) == 1:
            return best
        others = self.__dict__.get("_at_best", {}).get(trial_id) or [result.get(m) for m, _ in self.objectives[1:]]
        return [best, *others]

    def suggest(self, trial_id: str) -> dict | None:
        ot = optuna_parts(self)
        first = self.__dict__.get("_warm_first")  # absent in a searcher saved by an older hpo
        if first and trial_id not in ot.trials:  # an earlier sweep's best configuration, run before anything is drawn
            ot.study.enqueue_trial(first[0])
            config = super().suggest(trial_id)
            self._warm_given[trial_id] = first.pop(0)
            return config
        config = super().suggest(trial_id)
        replayed = self.__dict__.get("_replayed")
        while config and replayed and (key := _params_key({k: config.get(k) for k in ot.space})) in replayed:
            # A searcher state older than Tune's trials draws again what it drew before the crash (its
            # random state is older too): that configuration already runs as an adopted trial.
            replayed.discard(key)
            redrawn = ot.trials.pop(trial_id)
            redrawn.set_user_attr(NEVER_RAN, NEVER_RAN_REDRAWN)
            ot.study.tell(redrawn, state=TrialState.FAIL, skip_if_finished=True)
            config = super().suggest(trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if RoundReport.from_result(result).failure is not None:  # its last report carries no measured value
            return
        super().on_trial_result(trial_id, result)
        self._track(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot = optuna_parts(self)
        if error or not result or trial_id in ot.completed or trial_id not in ot.trials:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = ot.trials[trial_id]
        ended = outcome("TERMINATED", RoundReport.from_result(result))
        try:
            if ended == FAILED:  # diverged or out of memory: a failure for TPE, not a value
                ot.study.tell(ot_trial, None, state=TrialState.FAIL)
                return
            # Tune hands a trial's last result to on_trial_complete only: record it as a round too.
            step = result.get("training_iteration")
            seen = ot.study.get_trials(deepcopy=False)[ot_trial.number].intermediate_values
            # (Optuna keeps no learning curve of a multi-objective trial)
            if len(self.objectives) == 1 and step is not None and step not in seen and result.get(self.metric) is not None:
                ot_trial.report(result[self.metric], step)
            self._track(trial_id, result)
            values = self._values(trial_id, result)
            if ended == STOPPED:
                ot.study.tell(ot_trial, None, state=TrialState.PRUNED)
            elif isinstance(values, list) and None in values:  # a round without one of the objectives' values
                ot.study.tell(ot_trial, None, state=TrialState.FAIL)
            else:
                ot.study.tell(ot_trial, values)
        finally:
            ot.completed.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """Tune saves the searcher with the experiment state: the journal is stored with it, just before it
        (``hpo.tune.upload_order``), in Tune's upload of the experiment folder."""
        super().save(checkpoint_path)
        journal = self.__dict__.get("journal")  # absent in a searcher restored from an older hpo
        if journal is not None and not journal.experiment.is_local:
            store_with_state(journal.experiment.path, f"{META_DIR}/{JOURNAL_FILE}", journal.local)

    def reconcile(self, tune: dict[str, dict]) -> None:
        """Make the restored searcher agree with the trials Tune restored.

        Tune saves its trial list and the searcher's state as separate files, and uploads them to object
        storage one at a time in the background, so after a driver crash the two can come from different
        moments (on local disk they agree). Trials the searcher handed out that Tune never recorded are
        failed; trials Tune knows that the searcher does not are adopted (the study's running trial with
        the same configuration, or its ended trial when the journal already holds the end of one Tune saw end, or
        a new one); and trials Tune saw end are told to the study, once."""
        ot = optuna_parts(self)
        study = ot.study
        self._reconcile_warm(tune)
        for trial_id in [t for t in ot.trials if t not in tune]:  # handed out after Tune's last save
            ot.trials.pop(trial_id)
        mapped = {t.number for t in ot.trials.values()}
        running, ended = {}, {}
        for t in study.get_trials(deepcopy=False):
            if t.number in mapped:
                continue
            if t.state == TrialState.RUNNING:
                running.setdefault(_params_key(t.params), t)
            elif t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                ended.setdefault(_params_key(t.params), t)  # the journal holds its end; the searcher state is older
        for trial_id, state in tune.items():
            if trial_id in ot.trials:
                continue
            params = {k: state["config"][k] for k in ot.space if k in state["config"]}
            key = _params_key(params)
            match = running.pop(key, None) or (ended.pop(key, None) if state["status"] == "TERMINATED" else None)
            self.__dict__.setdefault("_replayed", set()).add(key)
            if match is not None:
                ot.trials[trial_id] = study_trial(study, match.number)
            else:
                study.enqueue_trial(params)
                ot.trials[trial_id] = study.ask(ot.space)
        for t in running.values():  # no trial of Tune's has this configuration: it never ran
            study_trial(study, t.number).set_user_attr(NEVER_RAN, NEVER_RAN_WHY)  # the dashboard shows why it failed
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        stored = study.get_trials(deepcopy=False)
        for trial_id, state in tune.items():
            if trial_id in ot.trials and stored_state(stored, ot.trials[trial_id].number).is_finished():
                ot.completed.add(trial_id)  # the journal, newer than the searcher state, has its end
                continue
            if state["status"] == "TERMINATED" and trial_id not in ot.completed and state["last_result"]:
                metric, mode = self.objectives[0]
                best = state["metric_analysis"].get(metric, {}).get(mode)
                if best is not None:
                    self._track(trial_id, {metric: best})
                self.on_trial_complete(trial_id, state["last_result"])

    def _reconcile_warm(self, tune: dict[str, dict]) -> None:
        """The earlier sweeps' configurations still to run first: one handed out that Tune never recorded goes back
        to the front; one that a trial of Tune's already has is not run again."""
        first, given = self.__dict__.get("_warm_first"), self.__dict__.get("_warm_given", {})
        if first is None:
            return
        back = [given.pop(t) for t in list(given) if t not in tune]
        space = optuna_parts(self).space
        tried = {_params_key({k: state["config"].get(k) for k in space}) for state in tune.values()}
        self._warm_first = [c for c in back + first if _params_key(c) not in tried]


def start_from(search: SweepSearch, warm: WarmStart) -> None:
    """An earlier sweep's trials enter the study before it draws (a trial that ran to its end as COMPLETE with the
    value at its last round, one the scheduler stopped as PRUNED with its rounds), so TPE models them from its first
    draw; the best configurations are handed out first (``SweepSearch.suggest``). Called once, when a sweep starts:
    a resumed sweep's study already holds them."""
    from optuna.trial import create_trial

    ot = optuna_parts(search)
    ot.study.add_trials(
        create_trial(
            state=TrialState.COMPLETE if t.completed else TrialState.PRUNED,
            value=t.value if t.completed else None,
            params=t.params,
            distributions={name: ot.space[name] for name in t.params},
            intermediate_values=t.rounds,
            user_attrs={"warm_start": t.source, "warm_start_trial": t.trial_id},
        )
        for t in warm.trials
    )
    search._warm_first = [dict(c) for c in warm.first]
    search._warm_given = {}


def name_objectives(study: Any, metrics: list[str]) -> None:
    """The objectives' names in the study, so that optuna-dashboard labels its Pareto front's axes with them."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(metrics)


def stored_state(trials: list, number: int) -> TrialState:
    """The state of study trial ``number`` in ``study.get_trials()`` (numbered from 0, in order)."""
    return trials[number].state if number < len(trials) else TrialState.RUNNING


def _params_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class SweepGenerator(SearchGenerator):
    """Tune's wrapper that creates trials from the searcher, made to agree with Tune's restored trials
    after a resume: the number of trials created, the limiter's running trials and the searcher's state
    are taken from Tune's experiment state, which may be older or newer than the searcher's saved state
    when the sweep lives in object storage (see ``SweepSearch.reconcile``)."""

    def restore_from_dir(self, dirpath: str) -> None:
        from hpo.core.results import tune_states

        super().restore_from_dir(dirpath)
        tune = tune_states(Location.parse(dirpath))
        limiter = self.searcher
        limiter.searcher.reconcile(tune)
        set_live_trials(limiter, {t for t, state in tune.items() if state["status"] in ("PENDING", "RUNNING", "PAUSED", "ERROR")})
        set_trials_created(self, len(tune))


def make_searcher(spec: Any, experiment: Location | None, warm: WarmStart | None = None) -> Any:
    """TPE (or random, for baselines) over the spec's space, limited to ``max_concurrent`` at a time;
    its study is journalled beside the sweep at ``experiment`` (in memory only when None), and starts from the
    earlier sweeps' trials of ``warm``."""
    from optuna.storages import JournalStorage

    from hpo.core.space import to_optuna

    journal = start_journal(experiment) if experiment is not None else None
    objectives = spec.objective_pairs()
    several = len(objectives) > 1  # Optuna's multi-objective study: TPE (or random) over all objectives
    search = SweepSearch(
        space=to_optuna(spec.search_space),
        metric=[m for m, _ in objectives] if several else spec.metric,
        mode=[d for _, d in objectives] if several else spec.mode,
        sampler=spec.searcher.sampler(),
        storage=JournalStorage(journal) if journal is not None else None,
        study_name=spec.name,
    )
    search.journal = journal  # pickled with the searcher, as the same object as the study's backend
    if several:
        name_objectives(optuna_parts(search).study, [m for m, _ in objectives])
    if warm is not None:
        start_from(search, warm)
    return SweepGenerator(ConcurrencyLimiter(search, max_concurrent=spec.budget.max_concurrent))

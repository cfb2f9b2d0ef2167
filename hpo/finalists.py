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
from dataclasses import dataclass, field
from typing import Any

from hpo.errors import Interrupted, PromotionError
from hpo.results import RUNNING, PENDING, Sweep, TrialRecord, parse_results
from hpo.stats import mean_std
from hpo.storage import META_DIR, Location
from trainables.report import RoundReport

FOLDER = "finalists"
PLAN = "plan.json"


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


def config_key(config: dict[str, Any], rounds: int) -> str:
    return json.dumps(config, sort_keys=True) + f"@{rounds}"


@dataclass
class Finalist:
    rank: int
    trial: TrialRecord
    sweep_value: float
    rounds: int
    seeds: list[int]
    values: dict[int, float | None] = field(default_factory=dict)  # seed -> value at `rounds` (None: failed)

    @property
    def scores(self) -> list[float]:
        return [v for s in self.seeds if (v := self.values.get(s)) is not None]

    @property
    def mean(self) -> float | None:
        return mean_std(self.scores)[0] if self.scores else None

    @property
    def std(self) -> float | None:
        return mean_std(self.scores)[1] if self.scores else None

    def record(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "trial_id": self.trial.trial_id,
            "params": self.trial.params,
            "rounds": self.rounds,
            "sweep_value": self.sweep_value,
            "seed_values": {str(s): self.values.get(s) for s in self.seeds},
            "mean": self.mean,
            "std": self.std,
        }


@dataclass
class Outcome:
    metric: str
    mode: str
    finalists: list[Finalist]
    chosen: Finalist

    def record(self) -> dict[str, Any]:
        return {"metric": self.metric, "chosen": self.chosen.trial.trial_id, "finalists": [f.record() for f in self.finalists]}


# ------------------------------------------------------------------------------------------ the plan
def root(sweep_path: Location) -> Location:
    return sweep_path.child(META_DIR, FOLDER)


def candidates(sweep: Sweep, top_k: int) -> list[tuple[TrialRecord, float, int]]:
    """The sweep's best ``top_k`` distinct configurations among trials that ended without a failure."""
    out, seen = [], set()
    for trial, value, rnd in sweep.ranked():
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


# --------------------------------------------------------------------------------------- the results
Curves = dict[str, dict[int, float | None]]  # config (with seed) as JSON -> {round: value}; None: failed there


def finished_curves(folder: Location, metric: str) -> Curves:
    """Every finalist trial's values by round, from all runs under ``folder``. Training is a pure function
    of (configuration, seed) and the LR schedule spans the configuration's epochs, so a run's value at
    round r is the value of any run of the same configuration and seed stopped at r: earlier runs are
    reused whatever round they were planned for."""
    out: Curves = {}
    if not folder.is_dir():
        return out
    for run in folder.list_dirs():
        for trial in run.list_dirs():
            results, params = trial.child("result.json"), trial.child("params.json")
            if not (results.is_file() and params.is_file()):
                continue
            curve = out.setdefault(json.dumps(json.loads(params.read_text()), sort_keys=True), {})
            for row in parse_results(results.read_text()):
                rnd = int(row.get("training_iteration", 0))
                curve[rnd] = RoundReport.from_result(row).value(metric)
    return out


def value_at(curves: Curves, config: dict[str, Any], rounds: int) -> tuple[bool, float | None]:
    """(known, value): the run's value at ``rounds``, or None when it failed at or before that round."""
    curve = curves.get(json.dumps(config, sort_keys=True), {})
    if rounds in curve:
        return True, curve[rounds]
    if any(v is None and r <= rounds for r, v in curve.items()):
        return True, None
    return False, None


def collect(finalists: list[Finalist], curves: Curves) -> None:
    for f in finalists:
        for s in f.seeds:
            known, value = value_at(curves, {**f.trial.params, "seed": s}, f.rounds)
            if known:
                f.values[s] = value


def choose(finalists: list[Finalist], mode: str) -> Finalist:
    """The best mean; a tie goes to the better-ranked configuration."""
    scored = [f for f in finalists if f.mean is not None]
    if not scored:
        raise PromotionError("every finalist run failed: no configuration has a value; see EXPERIMENT/hpo/finalists")
    sign = 1 if mode == "max" else -1
    return max(scored, key=lambda f: (sign * f.mean, -f.rank))


# --------------------------------------------------------------------------------------- the Tune run
def _tune_run(sweep: Sweep, prepared: Any, finalists: list[Finalist], folder: Location, echo: Callable[[str], None]) -> None:
    """Finish any interrupted finalist run from its checkpoints, then run what is still missing."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from hpo._result_loggers import result_loggers
    from hpo._round_stopper import RoundStopper
    from hpo.driver import _ray_storage, _trainable
    from hpo.results import tune_states

    spec = sweep.spec
    # The sweep's trainable and LR schedule, without early stopping: each run ends at its round.
    fixed = spec.model_copy(update={"scheduler": spec.scheduler.model_copy(update={"type": "fifo", "patience": None})})
    trainable = _trainable(fixed, prepared)
    for run in folder.list_dirs():
        states = tune_states(run)
        if run.child("tuner.pkl").exists() and any(st["status"] != "TERMINATED" for st in states.values()):
            echo(f"continuing the interrupted finalist run {run} from its checkpoints")
            storage = _ray_storage(run.parent)
            tuner = tune.Tuner.restore(
                run.path, trainable=trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=storage.get("storage_filesystem")
            )
            _fit(tuner, run, echo)
    collect(finalists, finished_curves(folder, spec.metric))
    todo = missing_runs(finalists)
    if not todo:
        return
    name = "run-" + hashlib.sha256("\n".join(r.key for r in todo).encode()).hexdigest()[:10]
    while folder.child(name).exists():
        name += "-again"
    configs = [r.config for r in todo]
    tuner = tune.Tuner(
        trainable,
        # Every trial's config is one of ``configs`` exactly (Tune wants each key to be in the space)
        param_space={k: tune.choice(list({json.dumps(c[k]): c[k] for c in configs}.values())) for k in configs[0]},
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=BasicVariantGenerator(points_to_evaluate=configs, max_concurrent=min(spec.budget.max_concurrent, len(todo))),
            num_samples=len(todo),
            reuse_actors=True,
            trial_name_creator=lambda t: f"finalist_{t.trial_id}",
            trial_dirname_creator=lambda t: f"finalist_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=name,
            **_ray_storage(folder),
            stop=RoundStopper({json.dumps(r.config, sort_keys=True): r.rounds for r in todo}),
            callbacks=[_janitor(spec), *result_loggers()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode),
            failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
            verbose=0,
        ),
    )
    _fit(tuner, folder.child(name), echo)


def _fit(tuner: Any, run: Location, echo: Callable[[str], None]) -> None:
    """Tune's run, stopped by Ctrl-C or SIGTERM the way a sweep is (its state saved, the running trials'
    checkpoints kept), which ends the promotion there; a finished run loses its checkpoints."""
    from hpo.driver import _quiet_tune, _stop_on_signals, sweep_environment

    with sweep_environment("disabled"), _stop_on_signals(echo) as received, _quiet_tune(False):
        tuner.fit()
    if received:
        raise Interrupted(f"the finalists' run was interrupted ({received[0]}); its state is saved in {run}: rerun the same `hpo promote` command to continue it")
    _drop_checkpoints(run)


def _janitor(spec: Any) -> Any:
    from hpo.janitor import CheckpointJanitor
    from hpo.storage import is_remote

    return CheckpointJanitor(spec.metric, spec.mode, None, at_end_only=is_remote(spec.storage))


def _drop_checkpoints(run: Location) -> None:
    """A finished run's checkpoints are of no further use (a retrain starts from the base model)."""
    for trial in run.list_dirs():
        for sub in trial.list_dirs():
            if sub.name.startswith("checkpoint_"):
                sub.delete_dir()


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
        _run_with_ray(sweep, prepare(), finalists, folder, address, echo)
        collect(finalists, finished_curves(folder, spec.metric))
        missing = missing_runs(finalists)
        if missing:
            echo(f"warning: {len(missing)} finalist run(s) did not finish (see {folder}); the means use the runs that did")
    outcome = Outcome(spec.metric, spec.mode, finalists, choose(finalists, spec.mode))
    print_table(outcome, echo)
    return outcome


def _run_with_ray(sweep: Sweep, prepared: Any, finalists: list[Finalist], folder: Location, address: str | None, echo: Callable[[str], None]) -> None:
    import ray

    from hpo.driver import init_ray

    started = not ray.is_initialized()
    init_ray(address)
    try:
        _tune_run(sweep, prepared, finalists, folder, echo)
    finally:
        if started:
            ray.shutdown()  # the retrain runs in this process: free the workers' memory first


# ----------------------------------------------------------------------------------------- reporting
def _fmt_value(v: float | None) -> str:
    return "failed" if v is None else f"{v:.4f}"


def mean_pm(f: Finalist) -> str:
    if f.mean is None:
        return "-"
    return f"{f.mean:.4f} ± {f.std:.4f}" if f.std is not None else f"{f.mean:.4f}"


def rows(outcome: Outcome) -> list[list[str]]:
    names = sorted({k for f in outcome.finalists for k in f.trial.params})
    head = ["rank", "trial", *names, "rounds", f"sweep {outcome.metric}", *[f"seed {s}" for s in outcome.finalists[0].seeds], "mean ± sd", ""]
    out = [head]
    for f in outcome.finalists:
        cells = [str(f.rank), f.trial.trial_id, *[_param(f.trial.params.get(n, "")) for n in names], str(f.rounds), f"{f.sweep_value:.4f}"]
        cells += [_fmt_value(f.values[s]) if s in f.values else "-" for s in f.seeds]
        cells += [mean_pm(f), "chosen" if f is outcome.chosen else ""]
        out.append(cells)
    return out


def _param(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def print_table(outcome: Outcome, echo: Callable[[str], None]) -> None:
    table = rows(outcome)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    echo(f"finalists ({outcome.metric} at each configuration's winning round; the mean is over the new seeds only):")
    for r in table:
        echo("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    c = outcome.chosen
    echo(f"chosen: {c.trial.trial_id} (rank {c.rank} in the sweep), mean {outcome.metric} {mean_pm(c)} over {len(c.scores)} seed(s)")


def card_markdown(outcome: Outcome) -> str:
    table = rows(outcome)
    lines = ["| " + " | ".join(table[0][:-1]) + " |", "|" + "---|" * (len(table[0]) - 1)]
    for r in table[1:]:
        cells = r[:-1]
        if r[-1]:
            cells[1] = f"**{cells[1]}** (chosen)"
        lines.append("| " + " | ".join(cells) + " |")
    c = outcome.chosen
    return f"""## Finalists over seeds

The sweep's best {len(outcome.finalists)} configurations were trained again with {len(c.seeds)} new training seeds each
(initialisation, batch order and dropout), to the round at which each reached its best in the sweep; the one
with the best mean `{outcome.metric}` was retrained. The sweep's own value is not in the mean: it was chosen for
being high.

{chr(10).join(lines)}
"""


def load_for_status(sweep: Sweep) -> Outcome | None:
    """The finalists as far as they ran (for ``hpo status``); None when promotion has not planned any."""
    folder = root(sweep.path)
    if not folder.child(PLAN).is_file():
        return None
    saved = folder.child(PLAN).read_json()
    by_id = {t.trial_id: t for t in sweep.trials}
    finalists = [
        Finalist(e["rank"], by_id[e["trial_id"]], e["sweep_value"], e["rounds"], e["seeds"])
        for e in saved.get("finalists", [])
        if e["trial_id"] in by_id
    ]
    if not finalists:
        return None
    collect(finalists, finished_curves(folder, saved.get("metric", sweep.spec.metric)))
    scored = [f for f in finalists if f.mean is not None]
    chosen = choose(scored, saved.get("mode", sweep.spec.mode)) if scored else finalists[0]
    return Outcome(saved.get("metric", sweep.spec.metric), saved.get("mode", sweep.spec.mode), finalists, chosen)

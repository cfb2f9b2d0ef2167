"""Tune runs of fixed configurations, each to a given round: the finalists over seeds. The sweep's
trainable, no searcher and no early stopping; an interrupted run continues from its checkpoints, a
finished run's checkpoints are deleted (a retrain starts from the base model)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hpo.core.errors import OutOfMemory, is_out_of_memory
from hpo.core.results import tune_states
from hpo.core.spec import SweepSpec
from hpo.core.storage import Location, is_remote
from hpo.tune.run import init_ray, quiet_tune, ray_storage, run_tune, stop_on_signals, sweep_environment, trainable


@dataclass(frozen=True)
class FixedRun:
    """One Tune experiment at ``folder``: trial i trains ``configs[i]`` to round ``rounds[i]``."""

    folder: Location
    configs: list[dict[str, Any]]
    rounds: list[int]


@contextmanager
def with_ray(address: str | None) -> Iterator[None]:
    """Ray for the runs; an embedded Ray started here is shut down after them, so that a retrain in this
    process gets the workers' memory back."""
    import ray

    started = not ray.is_initialized()
    init_ray(address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def continue_runs(folder: Location, spec: SweepSpec, data: Any, source: Any, echo: Callable[[str], None]) -> bool:
    """Every interrupted run under ``folder`` finished from its checkpoints. False: a signal stopped it."""
    from ray import tune

    for run in folder.list_dirs():
        states = tune_states(run)
        if run.child("tuner.pkl").exists() and any(st["status"] != "TERMINATED" for st in states.values()):
            echo(f"continuing the interrupted finalist run {run} from its checkpoints")
            storage = ray_storage(run.parent)
            tuner = tune.Tuner.restore(
                run.path,
                trainable=trainable(spec, data, source),
                resume_unfinished=True,
                resume_errored=True,
                storage_filesystem=storage.get("storage_filesystem"),
            )
            if not _fit(tuner, run, echo):
                return False
    return True


def run_fixed(run: FixedRun, spec: SweepSpec, data: Any, source: Any, echo: Callable[[str], None]) -> bool:
    """Train each configuration to its round. False: a signal stopped the run (its state is saved)."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from hpo.tune.janitor import CheckpointJanitor
    from hpo.tune.result_loggers import result_loggers
    from hpo.tune.round_stopper import RoundStopper

    configs = run.configs
    tuner = tune.Tuner(
        trainable(spec, data, source),
        # Every trial's config is one of ``configs`` exactly (Tune wants each key to be in the space)
        param_space={k: tune.choice(list({json.dumps(c[k]): c[k] for c in configs}.values())) for k in configs[0]},
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=BasicVariantGenerator(points_to_evaluate=configs, max_concurrent=min(spec.budget.max_concurrent, len(configs))),
            num_samples=len(configs),
            reuse_actors=True,
            trial_name_creator=lambda t: f"finalist_{t.trial_id}",
            trial_dirname_creator=lambda t: f"finalist_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=run.folder.name,
            **ray_storage(run.folder.parent),
            stop=RoundStopper({json.dumps(c, sort_keys=True): r for c, r in zip(configs, run.rounds)}),
            callbacks=[CheckpointJanitor(spec.metric, spec.mode, None, at_end_only=is_remote(spec.storage)), *result_loggers()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode),
            failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
            verbose=0,
        ),
    )
    return _fit(tuner, run.folder, echo)


def _fit(tuner: Any, run: Location, echo: Callable[[str], None]) -> bool:
    """Tune's run, stopped by Ctrl-C or SIGTERM the way a sweep is (its state saved, the running trials'
    checkpoints kept); a finished run loses its checkpoints."""
    from hpo.tune.upload_order import state_uploaded_last

    with sweep_environment("disabled"), stop_on_signals(echo) as received, quiet_tune(False), state_uploaded_last():
        results = run_tune(tuner, "the finalists' runs")
    if received:
        return False
    if any(is_out_of_memory(r.error) for r in results if r.error is not None):
        raise OutOfMemory("the finalists' runs")  # their checkpoints are kept: the rerun continues them
    for trial in run.list_dirs():
        for sub in trial.list_dirs():
            if sub.name.startswith("checkpoint_"):
                sub.delete_dir()
    return True

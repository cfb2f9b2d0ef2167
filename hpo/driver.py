"""The sweep driver: spec -> data prepared once -> Ray Tune (Optuna TPE + ASHA) -> experiment folder."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from hpo import experiment as exp
from hpo.errors import ExperimentError, HpoError
from hpo.spec import SweepSpec, dump_spec
from hpo.tracking import group_of, make_callback, resolve_mode
from trainables.prepare import Prepared, prepare

log = logging.getLogger("hpo")


def experiment_path(spec: SweepSpec) -> str:
    return exp.join(spec.storage, spec.name)


def journal_path(spec: SweepSpec) -> str | None:
    """The Optuna journal beside the sweep; None for remote storage (a journal needs a local file)."""
    from hpo.searcher import JOURNAL_FILE

    path = experiment_path(spec)
    return None if "://" in path else exp.join(path, exp.META_DIR, JOURNAL_FILE)


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Embedded Ray by default (``address='local'`` never joins a stale cluster); else connect."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
    else:
        ray.init(address=address, **kwargs)


def _scheduler(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration", max_t=s.max_rounds, grace_period=s.grace_period, reduction_factor=s.reduction_factor
    )


def build_tuner(spec: SweepSpec, prepared: Prepared, wandb_mode: str) -> Any:
    from ray import tune

    from hpo.searcher import make_searcher
    from trainables.trial import run_trial

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec=spec, data=prepared.data, source=prepared.source),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    callbacks = [cb for cb in [make_callback(spec.tracking, spec.name, wandb_mode)] if cb is not None]
    name = spec.name
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=make_searcher(spec, journal_path(spec)),
            scheduler=_scheduler(spec),
            num_samples=spec.budget.num_trials,
            time_budget_s=spec.budget.time_limit_s,
            trial_name_creator=lambda t: f"{name}_{t.trial_id}",
            trial_dirname_creator=lambda t: f"{name}_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=spec.storage,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=spec.checkpoints.num_to_keep,
                checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
            verbose=1,
        ),
    )


@dataclass(frozen=True)
class SweepOutcome:
    path: str
    wandb_mode: str
    n_trials: int
    n_errored: int


def run_sweep(
    spec: SweepSpec,
    address: str | None = None,
    wandb_mode: str | None = None,
    echo: Callable[[str], None] = print,
    num_cpus: int | None = None,
) -> SweepOutcome:
    """Run a whole sweep and return where it landed. Raises ``HpoError`` on bad data or if every trial errored."""
    path = experiment_path(spec)
    if exp.exists(exp.join(path, "tuner.pkl")):
        raise ExperimentError(f"an experiment already exists at {path}; pick another --name or --storage, or resume it")
    mode = resolve_mode(spec.tracking, wandb_mode)
    prepared = prepare(spec, echo)
    exp.write_text(exp.join(path, exp.META_DIR, exp.SPEC_FILE), dump_spec(spec))
    exp.write_json(exp.join(path, exp.META_DIR, exp.DATA_FILE), {**prepared.summary, "base_model": spec.model.name or "offline_preset", "wandb_mode": mode, "wandb_group": group_of(spec.tracking, spec.name), "wandb_project": spec.tracking.project})
    init_ray(address, num_cpus)
    echo(f"sweep {spec.name}: {spec.budget.num_trials} trials, {spec.budget.max_concurrent} at a time -> {path}")
    start = time.perf_counter()
    tuner = build_tuner(spec, prepared, mode)
    results = tuner.fit()
    del tuner  # let Tune's callbacks go while Ray is still up (their finalizers talk to Ray)
    gc.collect()
    echo(f"sweep finished in {time.perf_counter() - start:.0f}s")
    errored = sum(1 for r in results if r.error is not None)
    outcome = SweepOutcome(path, mode, len(results), errored)
    if errored == len(results):
        first = next(r.error for r in results if r.error is not None)
        raise HpoError(f"every trial errored ({errored}); first error: {first}")
    return outcome


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


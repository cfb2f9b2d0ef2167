"""Every private name of Ray Tune and Optuna that hpo relies on, in one place.

hpo extends Ray Tune's ``OptunaSearch``, ``SearchGenerator``, ASHA scheduler and W&B callback where their
public API stops short (a resumed searcher that agrees with Tune's trials, ASHA's one-class rule, W&B runs
that survive a driver crash, the order in which Tune uploads its experiment folder), and reads Tune's
experiment state file. Those extensions touch attributes
and file formats that Ray and Optuna may change in any release. They are reached only through this
module (and the two modules that subclass Tune's callbacks: ``hpo.tune.wandb_callback``, ``hpo.tune.result_loggers``), and ``tests/test_internals.py`` checks each one against the installed versions: an upgrade that
changes one fails there, with the name, instead of inside a sweep. ``pyproject.toml`` bounds Ray and
Optuna to the versions this was checked with (docs/upgrading.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# ------------------------------------------------------------------------- Ray's OptunaSearch


@dataclass(frozen=True)
class OptunaParts:
    """The live objects inside Ray's ``OptunaSearch`` (changes to them change the searcher)."""

    study: Any  # optuna.Study
    trials: dict[str, Any]  # Tune trial id -> optuna.trial.Trial
    completed: set[str]  # Tune trial ids already told to the study
    space: dict[str, Any]  # parameter name -> optuna distribution


def optuna_parts(search: Any) -> OptunaParts:
    return OptunaParts(search._ot_study, search._ot_trials, search._completed_trials, search._space)


def study_trial(study: Any, number: int) -> Any:
    """An ``optuna.trial.Trial`` handle on the study's existing trial ``number`` (Optuna hands one out only
    from ``ask``; a restored searcher adopts a running trial of its journal with it)."""
    from optuna.trial import Trial

    return Trial(study, study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


# --------------------------------------------------------------- Ray's SearchGenerator, limiter


def set_trials_created(generator: Any, count: int) -> None:
    """How many trials the generator has created (it stops at ``num_samples``)."""
    generator._counter = count


def set_live_trials(limiter: Any, trial_ids: set[str]) -> None:
    """The trials the ``ConcurrencyLimiter`` counts against ``max_concurrent``."""
    limiter.live_trials = set(trial_ids)
    limiter.num_unfinished_live_trials = len(trial_ids)


# --------------------------------------------------------------------------- Ray's ASHA scheduler


def asha_time_attr(scheduler: Any) -> str:
    return scheduler._time_attr


def count_asha_stop(scheduler: Any) -> None:
    """Keep ASHA's own count of stopped trials right when hpo stops one itself."""
    scheduler._num_stopped += 1


# ------------------------------------------------------------ Tune's saved checkpoint manager


def checkpoint_round(checkpoint_manager: Any) -> int | None:
    """The ``training_iteration`` of the checkpoint Tune restores a trial from: the latest one its saved state
    registered, which can be a round behind the state's ``last_result`` (Tune records a result before the
    result's checkpoint). 0: no checkpoint; None: the state holds none this version of Ray can read.

    Tune's state stores its checkpoint manager pickled; Tune itself unpickles the same bytes to restore."""
    if not isinstance(checkpoint_manager, dict) or checkpoint_manager.get("_type") != "CLOUDPICKLE_FALLBACK":
        return None
    try:
        from ray import cloudpickle

        latest = cloudpickle.loads(bytes.fromhex(checkpoint_manager["value"])).latest_checkpoint_result
    except Exception:  # a state from another Ray version: the caller falls back to last_result
        return None
    if latest is None or latest.checkpoint is None:
        return 0
    return int(latest.metrics.get("training_iteration", 0))


# ------------------------------------------------------- Tune's upload of its experiment folder


# What builds an upload: (the local folder, Tune's own upload of it) -> the upload to run instead, or None.
UploadBuilder = Callable[[str, Callable[..., None]], "Callable[..., None] | None"]


@contextmanager
def experiment_uploads_built_by(build: UploadBuilder) -> Iterator[None]:
    """While the block runs, each upload of a local folder that Tune's syncer starts runs what
    ``build(local_dir, tune_upload)`` returns instead of ``tune_upload`` (None: Tune's own).

    Tune's syncer (``_FilesystemSyncer``) builds an upload with ``_sync_up_command`` in Tune's loop, right after
    it saved the experiment state into the folder, and runs it in a thread with the keywords of Ray's
    ``_upload_to_fs_path``: ``local_path``, ``fs``, ``fs_path``, ``exclude``."""
    from ray.train._internal.storage import _FilesystemSyncer

    stock = _FilesystemSyncer._sync_up_command

    def sync_up_command(self: Any, local_path: str, uri: str, exclude: list | None = None) -> tuple:
        upload, kwargs = stock(self, local_path, uri, exclude)
        replaced = build(local_path, upload) if not exclude and os.path.isdir(local_path) else None
        return (replaced or upload), kwargs

    _FilesystemSyncer._sync_up_command = sync_up_command
    try:
        yield
    finally:
        _FilesystemSyncer._sync_up_command = stock


# --------------------------------------------------------- Ray's copies into the sweep's storage


def route_ray_uploads(copy: Callable[..., None]) -> None:
    """From now on, in this process, Ray's storage layer copies into any filesystem but the local one with
    ``copy`` (``pyarrow.fs.copy_files``'s keywords): a trial's checkpoint, Tune's experiment folder. It copies
    with ``ray.train._internal.storage._pyarrow_fs_copy_files``, which it looks up at each call; copies to
    this machine (downloads) stay Ray's own."""
    import pyarrow.fs
    from ray.train._internal import storage

    stock = getattr(storage._pyarrow_fs_copy_files, "ray_stock", storage._pyarrow_fs_copy_files)

    def routed(source: Any, destination: Any, source_filesystem: Any = None, destination_filesystem: Any = None, **kwargs: Any) -> Any:
        if destination_filesystem is not None and not isinstance(destination_filesystem, pyarrow.fs.LocalFileSystem):
            return copy(source, destination, source_filesystem=source_filesystem, destination_filesystem=destination_filesystem, **kwargs)
        return stock(source, destination, source_filesystem=source_filesystem, destination_filesystem=destination_filesystem, **kwargs)

    routed.ray_stock = stock  # type: ignore[attr-defined]
    storage._pyarrow_fs_copy_files = routed


# -------------------------------------------------------------------- Ray's W&B integration, W&B


def ray_wandb() -> Any:
    """The pieces of Ray's W&B callback that hpo's callback reuses (``hpo/tune/wandb_callback.py`` subclasses
    ``WandbLoggerCallback`` and its logging actor, whose ``_handle_result`` and ``_handle_checkpoint`` it
    calls; it overrides the callback's private ``_start_logging_actor``, ``_signal_logging_actor_stop``,
    ``_cleanup_logging_actor(s)`` and uses its ``_trial_logging_actors``, ``_trial_logging_futures``,
    ``_logging_future_to_trial``, ``_remote_logger_class``)."""
    from types import SimpleNamespace

    from ray.air.integrations import wandb as ray_wandb_module

    return SimpleNamespace(
        WandbLoggerCallback=ray_wandb_module.WandbLoggerCallback,
        LoggingActor=ray_wandb_module._WandbLoggingActor,
        QueueItem=ray_wandb_module._QueueItem,
        clean_log=ray_wandb_module._clean_log,
        force_on_current_node=ray_wandb_module._force_on_current_node,
        run_info_hook=ray_wandb_module._run_wandb_process_run_info_hook,
    )


def record_artifact_use_offline(run: Any, artifact: Any) -> None:
    """What W&B's ``use_artifact`` records for a new artifact (logged, then used once committed), written to
    an offline run's file (``use_artifact`` itself refuses offline runs); ``wandb sync`` performs it."""
    run._log_artifact(artifact, is_user_created=True, use_after_commit=True)


def list_packages_once() -> None:
    """W&B lists every installed distribution, reading each one's metadata, for every run it starts (the
    run's ``requirements.txt``): 0.6 CPU-seconds a run on this project's machine, six times what the rest
    of a trial's run costs. A process that writes many runs (a sweep's W&B logger) lists them once: W&B's
    ``wandb.util.working_set``, which ``Run._on_start`` looks up at each start, is replaced by its first
    answer, kept. The packages do not change while a sweep runs."""
    import wandb.util

    if getattr(wandb.util.working_set, "listed_once", False):
        return
    packages = list(wandb.util.working_set())

    def working_set() -> Any:
        return iter(packages)

    working_set.listed_once = True  # type: ignore[attr-defined]
    wandb.util.working_set = working_set

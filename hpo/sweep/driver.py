"""The sweep driver: spec -> data prepared once -> Ray Tune (Optuna TPE + ASHA) -> experiment folder."""

from __future__ import annotations

import gc
import logging
import os
import shlex
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

from hpo.sweep.baseline import read as read_baselines
from hpo.sweep.baseline import start as start_baselines
from hpo.core.errors import ExperimentError, HpoError, Interrupted, SpecError
from hpo.sweep.preflight import check_hub, check_wandb
from hpo.core.spec import SweepSpec, dump_spec
from hpo.core.storage import DATA_FILE, META_DIR, SPEC_FILE, Location, is_remote
from hpo.sweep.tracking import group_of, log_sweep_run, make_callback, resolve_mode, trial_story
from hpo.sweep.prepare import Prepared, prepare

log = logging.getLogger("hpo")


def experiment_location(spec: SweepSpec) -> Location:
    return Location.parse(spec.storage).child(spec.name)


def _ray_storage(storage: Location) -> dict[str, Any]:
    """How Ray Tune is told where the sweep lives: the filesystem object itself for a URI, so that query
    parameters (``endpoint_override``...) are honoured and no path is ever glued after them."""
    if storage.is_local:
        return {"storage_path": storage.path}
    return {"storage_path": storage.path, "storage_filesystem": storage.fs}


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Embedded Ray by default (``address='local'`` never joins a stale cluster); else connect."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is not None:
        ray.init(address=address, **kwargs)
        return
    try:
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
    except Exception as err:
        # Ray gives a new local node 30 s to register, a limit a machine busy with other work can pass:
        # that failure (and only that one) gets a second start.
        if "timed out during startup" not in str(err):
            raise
        log.warning("Ray's local node did not start within Ray's 30 s (a busy machine?); starting it once more")
        ray.shutdown()
        ray.init(address="local", num_cpus=num_cpus, **kwargs)


def _trainable(spec: SweepSpec, prepared: Prepared) -> Any:
    from ray import tune

    from trainables.parallel import run_parallel_trial
    from trainables.trial import run_trial

    # A data-parallel trial (several workers) is a relay that holds no CPU or GPU: Ray Train reserves its
    # workers' resources itself, and budget.max_concurrent bounds how many such trials run at once. (Tune
    # refuses a request for nothing, hence one byte of memory.)
    parallel = spec.resources.world_size > 1
    resources = {"cpu": 0, "gpu": 0, "memory": 1} if parallel else {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    shared = {"settings": spec.trial_settings(), "data": prepared.data, "source": prepared.source}
    if parallel:
        trainable = tune.with_parameters(run_parallel_trial, storage=_ray_storage(Location.parse(spec.storage)), **shared)
    else:
        trainable = tune.with_parameters(run_trial, **shared)
    return tune.with_resources(trainable, resources)


def _checkpoints_to_keep(spec: SweepSpec) -> int | None:
    """How many checkpoints Tune keeps per running trial.

    In object storage, all of them until the sweep ends (the janitor then deletes all but the best's):
    Tune deletes an old checkpoint as soon as it registers a new one, but uploads its experiment state in
    the background, so after a crash the stored state could point at a checkpoint already deleted, and
    that trial could not resume (seen in the S3 crash test). On a local or shared disk the state is
    written in place and ``checkpoints.num_to_keep`` applies."""
    return None if is_remote(spec.storage) else spec.checkpoints.num_to_keep


@dataclass(frozen=True)
class _TrialName:
    """A trial's name and folder name: ``SWEEP_TRIALID``. Tune stores these functions with every trial in
    its experiment state, which it saves after each checkpoint: a lambda goes there as its code (1.3 KB,
    twice per trial, a tenth of a trial's entry), this as a reference to it."""

    sweep: str

    def __call__(self, trial: Any) -> str:
        return f"{self.sweep}_{trial.trial_id}"


def build_tuner(spec: SweepSpec, prepared: Prepared, wandb_mode: str, verbose: bool = False) -> Any:
    """``verbose``: Ray Tune's own progress tables as well as hpo's compact view."""
    from ray import tune

    from hpo.tune.result_loggers import result_loggers
    from hpo.tune.console import SweepConsole
    from hpo.tune.janitor import CheckpointJanitor
    from hpo.tune.scheduler import make_scheduler
    from hpo.tune.searcher import make_searcher

    callbacks = [cb for cb in [make_callback(spec.tracking, spec.name, wandb_mode, trial_story(spec, prepared.summary))] if cb is not None]
    callbacks.append(CheckpointJanitor(spec.metric, spec.mode, spec.checkpoints.disk_budget_mb, at_end_only=is_remote(spec.storage)))
    callbacks.append(SweepConsole(spec.name, spec.metric, spec.mode, spec.budget.num_trials, wandb_mode, list(spec.search_space)))
    callbacks += result_loggers()
    name = spec.name
    return tune.Tuner(
        _trainable(spec, prepared),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=make_searcher(spec, experiment_location(spec)),
            scheduler=make_scheduler(spec),
            num_samples=spec.budget.num_trials,
            time_budget_s=spec.budget.time_limit_s,
            # a finished trial's worker process takes the next trial: no start-up per trial. A data-parallel
            # trial's process is ended instead, which ends the Ray Train run it owns with it.
            reuse_actors=spec.resources.world_size == 1,
            trial_name_creator=_TrialName(name),
            trial_dirname_creator=_TrialName(name),
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            **_ray_storage(Location.parse(spec.storage)),
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=_checkpoints_to_keep(spec),
                checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
            verbose=1 if verbose else 0,
        ),
    )


# Filesystems every node of a cluster sees the same way.
_SHARED_FS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.juicefs", "efs")


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding ``path`` (longest mount point prefix in /proc/mounts)."""
    target, best, kind = str(Path(path).resolve()), "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")) and len(parts[1]) >= len(best):
            best, kind = parts[1], parts[2]
    return kind


def check_storage(spec: SweepSpec) -> None:
    """On a cluster spanning several hosts, checkpoints must go where every node can read them."""
    import ray

    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    if len(hosts) < 2 or is_remote(spec.storage):
        return
    kind = filesystem_type(spec.storage)
    if kind not in _SHARED_FS:
        raise ExperimentError(
            f"storage {spec.storage!r} is on a node-local filesystem ({kind}) but the cluster has {len(hosts)} hosts: "
            "trials restarted on another node could not find their checkpoints. Use --storage s3://BUCKET/PATH, "
            "gs://..., or a shared (NFS) path mounted on every node"
        )


def check_fits(spec: SweepSpec, address: str | None, num_cpus: int | None) -> None:
    """A trial that needs more than the embedded Ray has would wait forever: refuse it before starting.
    (A cluster may grow: there Ray's autoscaler decides, and Tune reports a trial it cannot place.)"""
    if address is not None:
        return
    problems = []
    cpus = num_cpus or os.cpu_count() or 1
    workers = spec.resources.world_size
    if spec.resources.cpu * workers > cpus:
        each = f" ({workers} workers x {spec.resources.cpu:g})" if workers > 1 else ""
        problems.append(
            f"resources.cpu: one trial needs {spec.resources.cpu * workers:g} CPUs{each} and this machine's Ray has {cpus} "
            f"({'--num-cpus' if num_cpus else 'its cores'}); lower resources.cpu{' or resources.workers' if workers > 1 else ''} or run on a cluster (--address)"
        )
    if spec.resources.gpu > 0:
        import torch

        gpus = torch.cuda.device_count()
        if spec.resources.gpu > gpus:
            problems.append(f"resources.gpu: one trial needs {spec.resources.gpu:g} GPUs and this machine has {gpus}; lower resources.gpu")
    if problems:
        raise SpecError("resources", problems)


@dataclass(frozen=True)
class SweepOutcome:
    path: str
    wandb_mode: str
    n_trials: int
    n_errored: int


# With `checkpoints.num_to_keep`, Tune saves the experiment state after each trial checkpoint, so that a
# resumed sweep never points at a checkpoint it deleted. That is by design here (0.05 s a round,
# measured), so its warning about frequent snapshots would only repeat itself every few seconds.
_QUIET_SNAPSHOTS = ("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@contextmanager
def _stop_on_signals(echo: Callable[[str], None]) -> Iterator[list[str]]:
    """Ctrl-C or SIGTERM (what ``ray job stop`` and schedulers send): the first asks Tune to end the run
    the way it ends on its own, saving the experiment state, without waiting for W&B to finish writing
    (a resume replays those runs); a second one stops at once. Yields the names of the signals received."""
    from hpo.core.stopping import STOPPING

    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)
        STOPPING.set()
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
            raise KeyboardInterrupt  # Tune's loop has not started yet: nothing to save
        echo(f"{received[0]}: stopping the sweep and saving its state (again to stop at once)")
        # Tune would end with its own resume hint (Tuner.restore): the one to use is hpo's, printed after
        logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune ends its run loop on SIGUSR1, as on its own Ctrl-C

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    tune_level = logging.getLogger("ray.tune.tune").level
    tune_own = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours decides; Tune's would print its own resume hint
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        logging.getLogger("ray.tune.tune").setLevel(tune_level)
        if tune_own is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = tune_own
        STOPPING.clear()


@contextmanager
def sweep_environment(wandb_mode: str) -> Iterator[None]:
    """The environment variables Tune and Ray's W&B callback read while a run of Tune goes on, set for
    that run only and restored after (the process, a notebook's say, keeps its own): the W&B mode (Ray's
    callback asks for a key unless it says offline) and Tune's frequent-snapshot warning off (a value the
    user set is kept)."""
    wanted = {_QUIET_SNAPSHOTS[0]: os.environ.get(_QUIET_SNAPSHOTS[0], _QUIET_SNAPSHOTS[1])}
    if wandb_mode != "disabled":
        wanted.update(WANDB_MODE=wandb_mode, WANDB_SILENT=os.environ.get("WANDB_SILENT", "true"))
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Read by Tune when a run starts: its older output engine (silent at verbosity 0), and no traceback on the
# console for each failed trial (hpo's console prints one line; the traceback is in the trial's error.txt).
_TUNE_QUIET = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_PRINT_ALL_TRIAL_ERRORS": "0"}


@contextmanager
def _quiet_tune(verbose: bool) -> Iterator[None]:
    """hpo's console view replaces Tune's output: Tune's newer output engine prints its experiment box
    and paths whatever the verbosity, the older one prints nothing at verbosity 0. Optuna's INFO lines go too."""
    import optuna

    saved = {key: os.environ.get(key) for key in _TUNE_QUIET}
    level = optuna.logging.get_verbosity()
    if not verbose:
        for key, value in _TUNE_QUIET.items():
            os.environ.setdefault(key, value)  # a value the user set is kept
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def _fit(tuner: Any, path: str, mode: str, echo: Callable[[str], None], verbose: bool = False) -> SweepOutcome:
    start = time.perf_counter()
    from hpo.tune.console import close_all
    from hpo.tune.upload_order import state_uploaded_last

    # state_uploaded_last: a driver killed at any moment leaves no stored state newer than the trials' results
    with sweep_environment(mode), _stop_on_signals(echo) as received, _quiet_tune(verbose), state_uploaded_last():
        try:
            results = tuner.fit()
        finally:
            close_all()
    if received:
        raise Interrupted(f"the sweep was interrupted ({received[0]}) after {time.perf_counter() - start:.0f}s; its state is saved. Continue it with: hpo resume {shlex.quote(path)}")
    del tuner  # let Tune's callbacks go while Ray is still up (their finalizers talk to Ray)
    gc.collect()
    echo(f"sweep finished in {time.perf_counter() - start:.0f}s")
    _log_sweep_run(path, mode, echo)
    errored = sum(1 for r in results if r.error is not None)
    if errored == len(results):
        first = next(r.error for r in results if r.error is not None)
        raise HpoError(f"every trial errored ({errored}); first error: {first}")
    return SweepOutcome(path, mode, len(results), errored)


def _log_sweep_run(path: str, mode: str, echo: Callable[[str], None]) -> None:
    """The sweep's own W&B run (trials table, spec, data), written at the end of each run of the sweep."""
    if mode == "disabled":
        return
    from hpo.core.results import load_sweep

    try:
        log_sweep_run(load_sweep(path), mode)
    except Exception as err:  # the sweep is done and stored: W&B is a record of it
        echo(f"warning: could not write the sweep's W&B run: {type(err).__name__}: {' '.join(str(err).split())[:200]}")


def run_sweep(
    spec: SweepSpec,
    address: str | None = None,
    wandb_mode: str | None = None,
    echo: Callable[[str], None] = print,
    num_cpus: int | None = None,
    verbose: bool = False,
) -> SweepOutcome:
    """Run a whole sweep and return where it landed. Raises ``HpoError`` on bad data or if every trial errored."""
    path = experiment_location(spec)
    check_fits(spec, address, num_cpus)
    path.check_writable()  # a bad bucket, endpoint or folder is found before anything is loaded or started
    if path.child("tuner.pkl").exists():
        raise ExperimentError(f"an experiment already exists at {path}; pick another --name or --storage, or `hpo resume {path}`")
    check_hub(spec.model.name, spec.data.hub_id)
    mode = check_wandb(resolve_mode(spec.tracking, wandb_mode), wandb_mode or spec.tracking.mode, echo)
    prepared = prepare(spec, echo, alongside=lambda: init_ray(address, num_cpus))
    check_storage(spec)
    path.child(META_DIR, SPEC_FILE).write_text(dump_spec(spec))
    summary = {**prepared.summary, "base_model": spec.model.name or spec.model.offline_pretrained or "offline_preset"}
    tracking = {"wandb_mode": mode, "wandb_group": group_of(spec.tracking, spec.name), "wandb_project": spec.tracking.project}
    path.child(META_DIR, DATA_FILE).write_json({**summary, **tracking})
    echo(f"sweep {spec.name}: {spec.budget.num_trials} trials, {spec.budget.max_concurrent} at a time -> {path}")
    baselines = start_baselines(spec, prepared.splits, path, mode, echo)  # seconds, while the first trials start
    with _quiet_tune(verbose):  # the study is created (and announced by Optuna) with the tuner
        tuner = build_tuner(spec, prepared, mode, verbose)
    outcome = _fit(tuner, path.uri, mode, echo, verbose)
    baselines.join(_BASELINES_WAIT_S)
    return outcome


# The baselines take seconds; a sweep that ended sooner waits for them at most this long (they are a daemon
# thread: an interrupted sweep does not wait, and a resume computes them when they are missing).
_BASELINES_WAIT_S = 300


def resume_sweep(path: str, address: str | None = None, echo: Callable[[str], None] = print, num_cpus: int | None = None) -> SweepOutcome:
    """Continue a sweep whose driver died: finished trials are kept, unfinished ones resume from their
    checkpoints, the searcher's state is restored, W&B runs continue under the same ids."""
    from ray import tune

    from hpo.core.journal import fetch_for_resume
    from hpo.core.results import load_sweep
    from hpo.tune.settle import settle

    loc = Location.parse(path)
    sweep = load_sweep(loc)
    spec = sweep.spec
    if not loc.child("tuner.pkl").exists():
        raise ExperimentError(f"{path} has no Tune state (tuner.pkl) to resume from; start it with `hpo sweep`")
    mode = sweep.data.get("wandb_mode", "offline")
    if _finished(sweep, mode):
        echo(f"{loc}: the sweep already finished ({len(sweep.trials)} trials: {sweep.counts()}); nothing to resume, nothing changed")
        return SweepOutcome(loc.uri, mode, len(sweep.trials), sum(t.status == "ERROR" for t in sweep.trials))
    check_hub(spec.model.name, spec.data.hub_id)
    mode = check_wandb(mode, spec.tracking.mode, echo)
    prepared = prepare(spec, echo)
    if sweep.data.get("fingerprint") not in (None, prepared.splits.fingerprint):
        raise ExperimentError(f"the data changed since {path} started (fingerprint differs); cannot resume on other data")
    init_ray(address, num_cpus)
    check_storage(spec)
    settled = settle(loc)  # the trial folders Tune saved after its last state, brought in line with it
    for line in settled.describe():
        echo(line)
    if settled.orphans:
        sweep = load_sweep(loc)
    echo(f"resuming {spec.name} at {loc}: {len(sweep.trials)} trials known, {sweep.counts()}")
    fetch_for_resume(loc)
    baselines = start_baselines(spec, prepared.splits, loc, mode, echo) if read_baselines(loc) is None else None
    storage = _ray_storage(loc)
    tuner = tune.Tuner.restore(
        storage["storage_path"],
        trainable=_trainable(spec, prepared),
        resume_unfinished=True,
        resume_errored=True,
        storage_filesystem=storage.get("storage_filesystem"),
    )
    outcome = _fit(tuner, loc.uri, mode, echo)
    if baselines is not None:
        baselines.join(_BASELINES_WAIT_S)
    return outcome


def _finished(sweep: Any, wandb_mode: str) -> bool:
    """Every planned trial ended normally and, with W&B on, every trial's run was written out: a resume
    would have nothing to do (and must not touch the kept checkpoints)."""
    from hpo.tune.wandb_callback import LOGGED_MARKER

    trials = sweep.trials
    if len(trials) < sweep.spec.budget.num_trials or any(t.status != "TERMINATED" for t in trials):
        return False
    return wandb_mode == "disabled" or all(t.folder.child(LOGGED_MARKER).is_file() for t in trials if t.rounds)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


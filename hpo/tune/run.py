"""A run of Ray Tune, as hpo starts, restores and stops it: Ray itself, the trainable with its resources,
the tuner with hpo's searcher, scheduler and callbacks, the signal handling that saves a run's state on
Ctrl-C or SIGTERM, and Tune's own output kept quiet. The sweep driver and the finalists call these; they see
``Location`` and ``RunEnd``, not Tune's objects."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hpo.core.errors import OutOfMemory, Unreachable, UsageError, is_out_of_memory
from hpo.core.spec import SweepSpec
from hpo.core.storage import Location, is_remote
from trainables.errors import shown

log = logging.getLogger("hpo")


def ray_storage(storage: Location) -> dict[str, Any]:
    """How Ray Tune is told where the sweep lives: the filesystem object itself for a URI, so that query
    parameters (``endpoint_override``...) are honoured and no path is ever glued after them."""
    if storage.is_local:
        return {"storage_path": storage.path}
    return {"storage_path": storage.path, "storage_filesystem": storage.fs}


ADDRESS_WAIT_S = 20.0  # how long a cluster's address may take to answer before hpo says so


def check_address(address: str | None) -> None:
    """A cluster's ``--address`` answers, checked in seconds: Ray itself would retry a silent address for minutes
    without a word. ``auto`` (and ``local``) are Ray's to find; ``init_ray`` says when it finds none."""
    if address is None or address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is no number, or past 65535
        host, port = None, None
    if not host or port is None:
        raise UsageError(
            f"--address {shown(address)}: not a Ray cluster address; use HOST:PORT (the head node's port, e.g. 10.0.0.5:6379), "
            "ray://HOST:10001, or auto (the cluster this machine belongs to)"
        )
    try:
        socket.create_connection((host, port), timeout=ADDRESS_WAIT_S).close()
    except OSError as err:
        raise Unreachable(
            f"--address {address}: nothing answers at {host}:{port} within {ADDRESS_WAIT_S:.0f} s ({' '.join(str(err).split())[:200]}); "
            "start the cluster (ray start --head) or give its address"
        ) from None


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Embedded Ray by default (``address='local'`` never joins a stale cluster); else connect. Either way Ray then
    sends S3 filesystems to its workers with the sweep's retry bound (``hpo.tune.trial_storage``)."""
    import ray

    from hpo.tune.trial_storage import send_s3_with_retries

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is not None:
        check_address(address)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as err:  # e.g. auto with no cluster on this machine
            raise Unreachable(f"--address {address}: no Ray cluster there ({' '.join(str(err).split())[:200]}); start one (ray start --head) or give its address") from None
        send_s3_with_retries()
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
    send_s3_with_retries()


def trainable(spec: SweepSpec, data: Any, source: Any) -> Any:
    """The trial function Tune runs, with the prepared data and the base model's source shipped once (Ray's
    object store), and the resources each trial holds."""
    from ray import tune

    from trainables.parallel import run_parallel_trial
    from trainables.trial import run_trial

    # A data-parallel trial (several workers) is a relay that holds no CPU or GPU: Ray Train reserves its
    # workers' resources itself, and budget.max_concurrent bounds how many such trials run at once. (Tune
    # refuses a request for nothing, hence one byte of memory.)
    parallel = spec.resources.world_size > 1
    resources = {"cpu": 0, "gpu": 0, "memory": 1} if parallel else {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    shared = {"settings": spec.trial_settings(), "data": data, "source": source}
    if parallel:
        fn = tune.with_parameters(run_parallel_trial, storage=ray_storage(Location.parse(spec.storage)), **shared)
    else:
        fn = tune.with_parameters(run_trial, **shared)
    return tune.with_resources(fn, resources)


def checkpoints_to_keep(spec: SweepSpec) -> int | None:
    """How many checkpoints Tune keeps per running trial.

    In object storage, all of them until the sweep ends (the janitor then deletes all but the best's):
    Tune deletes an old checkpoint as soon as it registers a new one, but uploads its experiment state in
    the background, so after a crash the stored state could point at a checkpoint already deleted, and
    that trial could not resume (seen in the S3 crash test). On a local or shared disk the state is
    written in place and ``checkpoints.num_to_keep`` applies."""
    return None if is_remote(spec.storage) else spec.checkpoints.num_to_keep


@dataclass(frozen=True)
class TrialName:
    """A trial's name and folder name: ``SWEEP_TRIALID``. Tune stores these functions with every trial in
    its experiment state, which it saves after each checkpoint: a lambda goes there as its code (1.3 KB,
    twice per trial, a tenth of a trial's entry), this as a reference to it."""

    sweep: str

    def __call__(self, trial: Any) -> str:
        return f"{self.sweep}_{trial.trial_id}"


def build_tuner(spec: SweepSpec, data: Any, source: Any, wandb_mode: str, tracker: Any = None, verbose: bool = False, warm: Any = None) -> Any:
    """The sweep's Tune run. ``tracker``: the W&B callback (None: W&B off); ``verbose``: Ray Tune's own
    progress tables as well as hpo's compact view; ``warm``: the earlier sweeps' trials its searcher starts from
    (``hpo.core.warm.WarmStart``)."""
    from ray import tune

    from hpo.tune.result_loggers import result_loggers
    from hpo.tune.console import SweepConsole
    from hpo.tune.janitor import CheckpointJanitor
    from hpo.tune.scheduler import make_scheduler
    from hpo.tune.searcher import make_searcher

    callbacks = [tracker] if tracker is not None else []
    callbacks.append(CheckpointJanitor(spec.metric, spec.mode, spec.checkpoints.disk_budget_mb, at_end_only=is_remote(spec.storage)))
    callbacks.append(SweepConsole(spec.name, spec.metric, spec.mode, spec.budget.num_trials, wandb_mode, list(spec.search_space)))
    callbacks += result_loggers()
    name = spec.name
    return tune.Tuner(
        trainable(spec, data, source),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=make_searcher(spec, Location.parse(spec.storage).child(spec.name), warm),
            scheduler=make_scheduler(spec),
            num_samples=spec.budget.num_trials,
            time_budget_s=spec.budget.time_limit_s,
            # a finished trial's worker process takes the next trial: no start-up per trial. A data-parallel
            # trial's process is ended instead, which ends the Ray Train run it owns with it.
            reuse_actors=spec.resources.world_size == 1,
            trial_name_creator=TrialName(name),
            trial_dirname_creator=TrialName(name),
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            **ray_storage(Location.parse(spec.storage)),
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=checkpoints_to_keep(spec),
                checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
            verbose=1 if verbose else 0,
        ),
    )



# With `checkpoints.num_to_keep`, Tune saves the experiment state after each trial checkpoint, so that a
# resumed sweep never points at a checkpoint it deleted. That is by design here (0.05 s a round,
# measured), so its warning about frequent snapshots would only repeat itself every few seconds.
_QUIET_SNAPSHOTS = ("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@contextmanager
def stop_on_signals(echo: Callable[[str], None]) -> Iterator[list[str]]:
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


_TRACEBACK = "Traceback (most recent call last):"


class OneLineRecords(logging.Filter):
    """Ray's log lines one line each: a traceback in the message or attached to it is cut to its last line,
    the error. Tune's syncer, when the storage does not answer, logs every failed upload of the experiment
    folder with the upload's whole traceback (and its experiment state, Tune's failed save of it): a storage
    stall of a minute printed screens of them between the sweep's lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        head, _, trace = text.partition(_TRACEBACK)
        parts = [" ".join(head.split())]
        if trace.strip():
            parts.append(trace.strip().splitlines()[-1].strip())
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            parts.append(f"{type(err).__name__}: {' '.join(str(err).split())}")
        line = " ".join(p for p in parts if p)
        record.msg, record.args = (line if len(line) <= 400 else line[:397] + "..."), ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


@contextmanager
def quiet_tune(verbose: bool) -> Iterator[None]:
    """hpo's console view replaces Tune's output: Tune's newer output engine prints its experiment box
    and paths whatever the verbosity, the older one prints nothing at verbosity 0. Optuna's INFO lines go too,
    and what Ray logs (Tune's syncer's warnings when the storage stalls) comes one line each (``OneLineRecords``)."""
    import optuna

    saved = {key: os.environ.get(key) for key in _TUNE_QUIET}
    level = optuna.logging.get_verbosity()
    ray_log, one_line, added = logging.getLogger("ray"), OneLineRecords(), None
    handlers = [] if verbose else list(ray_log.handlers)
    if not verbose:
        for key, value in _TUNE_QUIET.items():
            os.environ.setdefault(key, value)  # a value the user set is kept
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if not handlers:  # as Ray leaves it once started: its warnings went to Python's last-resort handler
            added = logging.StreamHandler()
            added.setLevel(logging.WARNING)
            ray_log.addHandler(added)
            handlers = [added]
    for handler in handlers:
        handler.addFilter(one_line)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(one_line)
        if added is not None:
            ray_log.removeHandler(added)
        optuna.logging.set_verbosity(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


@dataclass(frozen=True)
class RunEnd:
    """How a run of Tune ended: its trials, how many errored (and the first error), and the signal that
    stopped it, if one did."""

    n_trials: int
    n_errored: int
    first_error: str | None
    interrupted_by: str | None
    seconds: float
    out_of_memory: int = 0  # trials Ray's memory monitor killed (their last error)


def fit(tuner: Any, wandb_mode: str, echo: Callable[[str], None], verbose: bool = False, again: str | None = None) -> RunEnd:
    """Run Tune under hpo's signal handling and quiet output; Ray stays up (the caller shuts it down). Ray's
    memory monitor ending the run is ``OutOfMemory`` (``again``: how to go on)."""
    from hpo.tune.console import close_all
    from hpo.tune.upload_order import state_uploaded_last

    start = time.perf_counter()
    # state_uploaded_last: a driver killed at any moment leaves no stored state newer than the trials' results
    with sweep_environment(wandb_mode), stop_on_signals(echo) as received, quiet_tune(verbose), state_uploaded_last():
        try:
            results = run_tune(tuner, "the sweep's trials", again)
        finally:
            close_all()
    if received:
        return RunEnd(0, 0, None, received[0], time.perf_counter() - start)
    del tuner  # let Tune's callbacks go while Ray is still up (their finalizers talk to Ray)
    gc.collect()
    errors = [r.error for r in results if r.error is not None]
    first = " ".join(str(errors[0]).split())[:300] if errors else None  # Ray's errors run to pages: the gist
    return RunEnd(len(results), len(errors), first, None, time.perf_counter() - start, sum(map(is_out_of_memory, errors)))


def run_tune(tuner: Any, running: str, again: str | None = None) -> Any:
    """``tuner.fit()``; Ray's memory monitor ending it is ``OutOfMemory`` naming what was ``running``."""
    try:
        return tuner.fit()
    except Exception as err:
        if is_out_of_memory(err):
            raise (OutOfMemory(running, again) if again else OutOfMemory(running)) from err
        raise


def restore(experiment: Location, spec: SweepSpec, data: Any, source: Any) -> Any:
    """Tune's run of a stored experiment, to continue: unfinished and errored trials resume from their
    checkpoints."""
    from ray import tune

    storage = ray_storage(experiment)
    return tune.Tuner.restore(
        storage["storage_path"],
        trainable=trainable(spec, data, source),
        resume_unfinished=True,
        resume_errored=True,
        storage_filesystem=storage.get("storage_filesystem"),
    )


def live_hosts() -> set[str]:
    """The addresses of the Ray cluster's live nodes."""
    import ray

    return {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}


def quiet_libraries() -> None:
    """What Ray prints on every start of the embedded Ray and a user can do nothing about (its note on token
    authentication), kept off the console; ``--debug`` shows it."""
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


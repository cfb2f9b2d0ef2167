"""The sweep driver: spec -> data prepared once -> Ray Tune (Optuna TPE + ASHA) -> experiment folder."""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

from hpo.sweep.baseline import read as read_baselines
from hpo.sweep.baseline import start as start_baselines
from hpo.core.errors import ExperimentError, HpoError, Interrupted, OutOfMemory, SpecError
from hpo.sweep.gpus import announce as announce_gpus
from hpo.sweep.preflight import check_hub, check_wandb
from hpo.core.spec import SweepSpec, dump_spec
from hpo.core.storage import DATA_FILE, META_DIR, SPEC_FILE, Location, is_remote
from hpo.core.warm import WARM_START_KEY, load_warm_start
from hpo.sweep.tracking import group_of, log_sweep_run, make_callback, resolve_mode, trial_story
from hpo.sweep.prepare import load_base_model, load_data, prepare
from hpo.tune.run import build_tuner, check_address, fit, init_ray, live_hosts, quiet_tune, restore
from trainables.data import Splits

log = logging.getLogger("hpo")


def experiment_location(spec: SweepSpec) -> Location:
    return Location.parse(spec.storage).child(spec.name)


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
    hosts = live_hosts()
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


def _fit(tuner: Any, path: str, mode: str, echo: Callable[[str], None], verbose: bool = False) -> SweepOutcome:
    again = f"continue the sweep with: hpo resume {shlex.quote(path)} (its trials continue from their checkpoints)"
    end = fit(tuner, mode, echo, verbose, again)
    if end.interrupted_by:
        raise Interrupted(f"the sweep was interrupted ({end.interrupted_by}) after {end.seconds:.0f}s; its state is saved. Continue it with: hpo resume {shlex.quote(path)}")
    echo(f"sweep finished in {end.seconds:.0f}s")
    _log_sweep_run(path, mode, echo)
    if end.n_errored == end.n_trials:
        if end.out_of_memory:
            raise OutOfMemory(f"every trial errored ({end.n_errored}), {end.out_of_memory} of them", again)
        raise HpoError(f"every trial errored ({end.n_errored}); first error: {end.first_error}")
    return SweepOutcome(path, mode, end.n_trials, end.n_errored)


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
    mode = _check_before_start(spec, path, address, wandb_mode, echo, num_cpus)
    warm = load_warm_start(spec, echo)  # before anything is loaded or started: a bad earlier sweep is said at once
    announce_gpus(spec.resources.gpu, echo)
    prepared = prepare(spec, echo, alongside=lambda: init_ray(address, num_cpus))
    check_storage(spec)
    path.child(META_DIR, SPEC_FILE).write_text(dump_spec(spec))
    summary = {**prepared.summary, "base_model": spec.model.name or spec.model.offline_pretrained or "offline_preset"}
    tracking = {"wandb_mode": mode, "wandb_group": group_of(spec.tracking, spec.name), "wandb_project": spec.tracking.project}
    started_from = {WARM_START_KEY: warm.record()} if warm is not None else {}
    path.child(META_DIR, DATA_FILE).write_json({**summary, **tracking, **started_from})
    echo(f"sweep {spec.name}: {spec.budget.num_trials} trials, {spec.budget.max_concurrent} at a time -> {path}")
    baselines = start_baselines(spec, prepared.splits, path, mode, echo)  # seconds, while the first trials start
    tracker = make_callback(spec.tracking, spec.name, mode, trial_story(spec, prepared.summary))
    with quiet_tune(verbose):  # the study is created (and announced by Optuna) with the tuner
        tuner = build_tuner(spec, prepared.data, prepared.source, mode, tracker, verbose, warm)
    outcome = _fit(tuner, path.uri, mode, echo, verbose)
    baselines.join(_BASELINES_WAIT_S)
    return outcome


def _check_before_start(
    spec: SweepSpec, path: Location, address: str | None, wandb_mode: str | None, echo: Callable[[str], None], num_cpus: int | None, hub_model: bool = True
) -> str:
    """What a sweep checks in seconds, before it loads data or starts Ray: resources, storage, the Hub (not
    for the model with ``hub_model`` False) and W&B. Returns the W&B mode the sweep will use."""
    check_address(address)  # a cluster that does not answer is said in seconds, before anything is loaded
    check_fits(spec, address, num_cpus)
    path.check_writable()  # a bad bucket, endpoint or folder is found before anything is loaded or started
    if path.child("tuner.pkl").exists():
        raise ExperimentError(f"an experiment already exists at {path}; pick another --name or --storage, or `hpo resume {path}`")
    check_hub(spec.model.name if hub_model else None, spec.data.hub_id)
    return check_wandb(resolve_mode(spec.tracking, wandb_mode), wandb_mode or spec.tracking.mode, echo)


def check_sweep(
    spec: SweepSpec,
    address: str | None = None,
    wandb_mode: str | None = None,
    echo: Callable[[str], None] = print,
    num_cpus: int | None = None,
    model: bool = True,
) -> Splits:
    """``hpo sweep --check``: every check ``run_sweep`` makes before its first trial (resources, storage, the
    Hub, W&B, the earlier sweeps of ``warm_start``, the data's splits and classes, the base model and its
    tokenizer), with Ray never started and nothing written to the sweep's storage. ``model`` False leaves the
    base model out (``hpo init`` for a Hub model it cannot reach). Returns the checked splits."""
    _check_before_start(spec, experiment_location(spec), address, wandb_mode, echo, num_cpus, hub_model=model)
    load_warm_start(spec, echo)
    splits = load_data(spec, echo)
    if model:
        load_base_model(spec)
    return splits


# The baselines take seconds; a sweep that ended sooner waits for them at most this long (they are a daemon
# thread: an interrupted sweep does not wait, and a resume computes them when they are missing).
_BASELINES_WAIT_S = 300


def resume_sweep(path: str, address: str | None = None, echo: Callable[[str], None] = print, num_cpus: int | None = None) -> SweepOutcome:
    """Continue a sweep whose driver died: finished trials are kept, unfinished ones resume from their
    checkpoints, the searcher's state is restored, W&B runs continue under the same ids."""
    from hpo.core.journal import fetch_for_resume
    from hpo.core.results import load_sweep
    from hpo.tune.settle import settle

    check_address(address)
    loc = Location.parse(path)
    sweep = load_sweep(loc)
    if not loc.child("tuner.pkl").exists():
        raise ExperimentError(f"{path} has no Tune state (tuner.pkl) to resume from; start it with `hpo sweep`")
    if sweep.unreadable_state is not None:  # Tune would start from no trial and run the whole budget again
        raise ExperimentError(
            f"{sweep.unreadable_state}, so Tune cannot tell which trials it ran; nothing was resumed or changed. Start a "
            f"new sweep that carries this one's ended trials over: `hpo sweep SPEC --warm-start {path}`"
        )
    for problem in sweep.damaged:
        echo(f"warning: {problem}")
    spec = sweep.spec
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
    announce_gpus(spec.resources.gpu, echo)
    settled = settle(loc)  # the trial folders Tune saved after its last state, brought in line with it
    for line in settled.describe():
        echo(line)
    if settled.orphans:
        sweep = load_sweep(loc)
    echo(f"resuming {spec.name} at {loc}: {len(sweep.trials)} trials known, {sweep.counts()}")
    fetch_for_resume(loc)
    baselines = start_baselines(spec, prepared.splits, loc, mode, echo) if read_baselines(loc) is None else None
    tuner = restore(loc, spec, prepared.data, prepared.source)
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

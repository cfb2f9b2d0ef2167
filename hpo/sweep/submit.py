"""``hpo submit``: run a sweep as a job on a Ray cluster, through Ray's Job Submission API.

Everything that can be checked on the user's machine is checked before the job is sent: the spec, that
the sweep's storage is object storage both sides can reach and holds no sweep of that name yet, and that
every data file and local model is one the cluster can read (in object storage, on the Hub, or inside
the working directory that is shipped with the job), and that the earlier sweeps of ``warm_start`` are in
object storage and can start this one. The job then runs ``hpo sweep`` on the cluster's
head node with the spec as validated here, stored beside the sweep (``EXPERIMENT/hpo/submitted.yaml``).

No secret travels with the job: Ray writes a job's runtime environment into its logs, so W&B keys, Hub
tokens and cloud credentials must already be in the environment of the cluster's nodes (see
docs/clusters.md).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hpo.core.errors import ExperimentError, SpecError, UsageError
from hpo.core.spec import SweepSpec, dump_spec
from hpo.core.storage import META_DIR, Location, is_remote
from hpo.core.warm import load_warm_start
from hpo.tune.jobs import connect, follow_job, submit_job

SUBMITTED_SPEC = "submitted.yaml"
# Never shipped with the project: environments, outputs, caches, the repository's history.
_EXCLUDES = [".venv", "venv", ".git", "runs", "promoted", "wandb", "**/__pycache__", ".pytest_cache", "*.egg-info", ".ipynb_checkpoints"]


@dataclass(frozen=True)
class Submission:
    job_id: str
    experiment: str
    address: str
    status: str | None = None  # the job's final status with ``follow``


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def cluster_spec(spec: SweepSpec, working_dir: Path, source: str) -> SweepSpec:
    """The spec as the job sees it: local files as paths relative to the shipped working directory.
    Refuses (exit 2) a local path the cluster could not read, and storage only this machine sees."""
    problems = []
    if not is_remote(spec.storage):
        problems.append(
            f"storage: {spec.storage!r} is a folder on this machine; a sweep on a cluster must live where every node and "
            "this machine can read it: --storage s3://BUCKET/PATH (or gs://, or an S3-compatible server via AWS_ENDPOINT_URL)"
        )
    files = dict(spec.data.files or {})
    for split, f in files.items():
        if is_remote(f):
            continue
        p = Path(f)
        if not _inside(p, working_dir):
            problems.append(
                f"data.files.{split}: {f} is on this machine, outside the working directory {working_dir} that is shipped "
                "with the job; upload it to object storage (s3://..., gs://...) and give its URI, or move it into the working directory"
            )
        else:
            files[split] = p.relative_to(working_dir).as_posix()
    model = spec.model
    if model.name is not None and Path(model.name).is_absolute():
        p = Path(model.name)
        if not _inside(p, working_dir):
            problems.append(
                f"model.name: {model.name} is a folder on this machine, outside the working directory {working_dir}; "
                "publish it to the Hub (or a private Hub repo) or move it into the working directory"
            )
        else:
            model = model.model_copy(update={"name": "./" + p.relative_to(working_dir).as_posix()})
    for i, earlier in enumerate(spec.warm_start):
        if not is_remote(earlier):
            problems.append(
                f"warm_start.{i}: {earlier} is a folder on this machine, which the job on the cluster cannot read; give the "
                "earlier sweep's folder in object storage (s3://..., gs://...)"
            )
    if problems:
        raise SpecError(source, problems)
    data = spec.data.model_copy(update={"files": files or None})
    return spec.model_copy(update={"data": data, "model": model})


def _check_address(address: str) -> None:
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--address {address!r}: give the Ray dashboard's address, e.g. http://HEAD:8265")


def submit(
    spec: SweepSpec,
    address: str,
    working_dir: str | Path,
    source: str,
    wandb_mode: str | None = None,
    follow: bool = False,
    echo: Callable[[str], None] = print,
    client: Any = None,
) -> Submission:
    """Validate, ship, and start the sweep as a Ray job; with ``follow``, print its logs until it ends."""
    _check_address(address)
    root = Path(working_dir).resolve()
    if not root.is_dir():
        raise UsageError(f"--working-dir {working_dir!r}: no such folder")
    job_spec = cluster_spec(spec, root, source)
    experiment = Location.parse(spec.storage).child(spec.name)
    experiment.check_writable()
    if experiment.child("tuner.pkl").exists():
        raise ExperimentError(f"an experiment already exists at {experiment}; pick another --name or --storage, or resume it")
    load_warm_start(spec, echo)  # the earlier sweeps are read here too: a bad one is said before the job is sent
    client = client or connect(address)
    stored = experiment.child(META_DIR, SUBMITTED_SPEC)
    stored.write_text(dump_spec(job_spec))
    command = ["python", "-m", "hpo.cli", "sweep", stored.uri, "--address", "auto"]
    if wandb_mode:
        command += ["--wandb-mode", wandb_mode]
    job_id = submit_job(
        client,
        entrypoint=shlex.join(command),
        runtime_env={"working_dir": str(root), "excludes": _EXCLUDES},
        metadata={"hpo_experiment": experiment.uri},
    )
    shown = shlex.quote(experiment.uri)
    echo(f"submitted job {job_id} to {address}")
    echo(f"experiment: {experiment}")
    echo(f"follow it:  ray job logs --address {address} --follow {job_id}")
    echo(f"trials:     hpo status {shown}")
    echo(f"stop it:    ray job stop --address {address} {job_id}   (then `hpo resume {shown} --address auto` on the cluster)")
    status = follow_job(client, job_id, echo) if follow else None
    return Submission(job_id, experiment.uri, address, status)

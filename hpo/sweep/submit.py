"""``hpo submit``: run a sweep as a job on a Ray cluster, through Ray's Job Submission API.

Everything that can be checked on the user's machine is checked before the job is sent: the spec, that
the sweep's storage is object storage both sides can reach and holds no sweep of that name yet, and that
every data file and local model is one the cluster can read (in object storage, on the Hub, or inside
the working directory that is shipped with the job). The job then runs ``hpo sweep`` on the cluster's
head node with the spec as validated here, stored beside the sweep (``EXPERIMENT/hpo/submitted.yaml``).

No secret travels with the job: Ray writes a job's runtime environment into its logs, so W&B keys, Hub
tokens and cloud credentials must already be in the environment of the cluster's nodes (see
docs/clusters.md).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hpo.core.errors import ExperimentError, HpoError, SpecError, UsageError
from hpo.core.spec import SweepSpec, dump_spec
from hpo.core.storage import META_DIR, Location, is_remote

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
    if problems:
        raise SpecError(source, problems)
    data = spec.data.model_copy(update={"files": files or None})
    return spec.model_copy(update={"data": data, "model": model})


def _check_address(address: str) -> None:
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--address {address!r}: give the Ray dashboard's address, e.g. http://HEAD:8265")


def _client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as err:  # ConnectionError, or a dashboard that is not Ray's: one line, the cause
        text = " ".join(str(err).split())
        if "authentication" in text.lower():
            raise HpoError(
                f"the Ray cluster at {address} requires its token: set RAY_AUTH_MODE=token and either RAY_AUTH_TOKEN "
                "or the file ~/.ray/auth_token (copied from the head node), then rerun"
            ) from None
        raise HpoError(f"cannot reach the Ray dashboard at {address}: {text[:300]}") from None


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
    client = client or _client(address)
    stored = experiment.child(META_DIR, SUBMITTED_SPEC)
    stored.write_text(dump_spec(job_spec))
    command = ["python", "-m", "hpo.cli", "sweep", stored.uri, "--address", "auto"]
    if wandb_mode:
        command += ["--wandb-mode", wandb_mode]
    job_id = _submit_job(
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
    status = _follow(client, job_id, echo) if follow else None
    return Submission(job_id, experiment.uri, address, status)


def _submit_job(client: Any, wait_s: float = 90.0, **job: Any) -> str:
    """Submit, waiting while a head that just started has no job agent up yet (Ray answers 500 then)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as err:
            text = " ".join(str(err).split())
            if "No available agent" in text and time.monotonic() < deadline:
                time.sleep(2)
                continue
            raise HpoError(f"the Ray cluster did not accept the job: {text[:300]}") from None


def _follow(client: Any, job_id: str, echo: Callable[[str], None], poll_s: float = 2.0) -> str:
    """Print the job's new log lines until it ends; returns its final status (SUCCEEDED, FAILED, STOPPED)."""
    shown = 0
    while True:
        status = client.get_job_status(job_id)
        status = str(getattr(status, "value", status))
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            echo(logs[shown:].rstrip("\n"))
            shown = len(logs)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            echo(f"job {job_id}: {status}")
            return status
        time.sleep(poll_s)

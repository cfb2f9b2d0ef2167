"""Ray's Job Submission API, as ``hpo submit`` uses it: connect to a cluster's dashboard, submit a job
(waiting while a fresh head's job agent starts), follow its logs to the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hpo.core.errors import HpoError


def connect(address: str) -> Any:
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


def submit_job(client: Any, wait_s: float = 90.0, **job: Any) -> str:
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


def follow_job(client: Any, job_id: str, echo: Callable[[str], None], poll_s: float = 2.0) -> str:
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

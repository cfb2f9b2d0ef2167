"""Weights & Biases: one run per trial through Ray Tune's ``WandbLoggerCallback``, grouped per sweep.

The API key is only ever read from the environment or W&B's own login; it is never passed on, written
to a config or stored with the sweep.
"""

from __future__ import annotations

import os
from typing import Any

from hpo.spec import TrackingSpec


def resolve_mode(tracking: TrackingSpec, override: str | None = None) -> str:
    """``auto`` means online when a key is in the environment, offline otherwise."""
    mode = override or tracking.mode
    if mode == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return mode


def group_of(tracking: TrackingSpec, sweep_name: str) -> str:
    return tracking.group or sweep_name


def make_callback(tracking: TrackingSpec, sweep_name: str, mode: str) -> Any | None:
    """The Tune callback, or None when tracking is disabled.

    Ray's callback reads ``WANDB_MODE`` from the environment to decide whether it needs a key, so the
    mode is set there for this process (and the logging actors it starts) as well as passed to
    ``wandb.init``.
    """
    if mode == "disabled":
        return None
    from hpo._wandb_callback import SweepWandbCallback

    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    # resume="allow": a trial restored after a driver crash continues its own run (id = trial id).
    kwargs: dict[str, Any] = {"mode": mode, "job_type": "trial", "resume": "allow"}
    if tracking.entity:
        kwargs["entity"] = tracking.entity
    # Offline, finishing a run is a local write: a logger still busy after two minutes is stuck, and the
    # sweep should end rather than wait for Tune's default half hour. Online keeps time to upload.
    timeout = 120 if mode == "offline" else 1800
    return SweepWandbCallback(project=tracking.project, group=group_of(tracking, sweep_name), upload_timeout=timeout, **kwargs)


def log_promotion(tracking: TrackingSpec, sweep_name: str, mode: str, name: str, config: dict, summary: dict, folder: str, wandb_module: Any = None) -> str | None:
    """One more run in the sweep's group, job type ``promotion``. Returns the run's local folder."""
    if mode == "disabled":
        return None
    wandb = wandb_module
    if wandb is None:
        import wandb
    run = wandb.init(
        project=tracking.project,
        entity=tracking.entity,
        group=group_of(tracking, sweep_name),
        job_type="promotion",
        name=name,
        config=config,
        mode=mode,
        dir=folder,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True),
    )
    run.summary.update(summary)
    run_dir = getattr(run, "dir", None)
    run.finish()
    return run_dir


def log_baseline(tracking: TrackingSpec, sweep_name: str, mode: str, config: dict, summary: dict, folder: str, wandb_module: Any = None) -> str | None:
    """The sweep's baselines as one more run of its group, job type ``baseline``. Returns the run's folder."""
    if mode == "disabled":
        return None
    wandb = wandb_module
    if wandb is None:
        import wandb
    run = wandb.init(
        project=tracking.project,
        entity=tracking.entity,
        group=group_of(tracking, sweep_name),
        job_type="baseline",
        name=f"{sweep_name}-baseline",
        config=config,
        mode=mode,
        dir=folder,
        reinit="create_new",
        settings=wandb.Settings(silent=True),
    )
    run.summary.update(summary)
    run_dir = getattr(run, "dir", None)
    run.finish()
    return run_dir

"""Weights & Biases: one run per trial through Ray Tune's ``WandbLoggerCallback``, grouped per sweep, plus
the sweep's own run (its trials table) and the promotion's; the dataset and the promoted model are
artifacts of references, so W&B's lineage reads data -> trials, data -> promotion -> model.

The API key is only ever read from the environment or W&B's own login; it is never passed on, written
to a config or stored with the sweep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.core.spec import SweepSpec, TrackingSpec
from hpo.core.warm import WARM_START_KEY, kept_record

if TYPE_CHECKING:
    from hpo.core.results import Sweep


def resolve_mode(tracking: TrackingSpec, override: str | None = None) -> str:
    """``auto`` means online when a key is in the environment, offline otherwise."""
    mode = override or tracking.mode
    if mode == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return mode


def group_of(tracking: TrackingSpec, sweep_name: str) -> str:
    return tracking.group or sweep_name


# ------------------------------------------------------------------------------ what W&B shows
SWEEP_RUN_FILE = "wandb-sweep-run.json"  # in the sweep's hpo/ folder: the sweep run's id, kept across resumes


@dataclass(frozen=True)
class DatasetRef:
    """The data a sweep trained on, as a W&B artifact of references (never a copy): named by the data's
    fingerprint, so every trial, the sweep run and the promotion point at one artifact version."""

    name: str
    references: dict[str, str]  # entry name -> URI of the source file (or Hub dataset page)
    metadata: dict[str, Any] = field(default_factory=dict)

    def artifact(self, wandb: Any) -> Any:
        art = wandb.Artifact(self.name, type="dataset", metadata=self.metadata)
        for entry, uri in self.references.items():
            # checksum=False: a reference is recorded without reading (or, for a bucket or the Hub,
            # contacting) the source; the fingerprint in the name and metadata identifies the data.
            art.add_reference(uri, name=entry, checksum=False)
        return art


@dataclass(frozen=True)
class TrialStory:
    """What each trial's W&B run carries besides its rounds: the sweep's metric and direction (the
    summary keeps the best value and its round), ASHA's rungs, and the dataset it used."""

    metric: str
    mode: str
    rungs: list[int]
    dataset: DatasetRef | None = None


def dataset_ref(spec: SweepSpec, data: dict[str, Any]) -> DatasetRef | None:
    """The dataset artifact of a sweep from its spec and ``hpo/data.json`` (None before the data was checked)."""
    fingerprint = data.get("fingerprint")
    if not fingerprint:
        return None
    d = spec.data
    if d.hub_id:
        refs = {d.hub_id.replace("/", "__"): f"https://huggingface.co/datasets/{d.hub_id}"}
    else:
        refs = {split: _reference_uri(path) for split, path in (d.files or {}).items()}
    metadata = {
        "fingerprint": fingerprint,
        "label_names": data.get("label_names"),
        "class_counts": data.get("class_counts"),
        "source": d.hub_id or dict(d.files or {}),
        "sampling": {"train_size": d.train_size, "test_size": d.test_size, "validation_fraction": d.validation_fraction, "seed": d.seed},
    }
    return DatasetRef(f"data-{fingerprint[:16]}", refs, metadata)


def _reference_uri(path: str) -> str:
    """A file's URI for a W&B reference: ``file://`` for a local path; a bucket URI without its query."""
    from hpo.core.storage import Location, is_remote

    if is_remote(path):
        return path.split("?", 1)[0]
    return Path(Location.parse(path).path).as_uri()


def trial_story(spec: SweepSpec, data: dict[str, Any]) -> TrialStory:
    return TrialStory(spec.metric, spec.mode, spec.scheduler.rungs(), dataset_ref(spec, data))


def make_callback(tracking: TrackingSpec, sweep_name: str, mode: str, story: TrialStory | None = None) -> Any | None:
    """The Tune callback, or None when tracking is disabled.

    Ray's callback also reads ``WANDB_MODE`` from the environment to decide whether it needs a key: the
    driver sets it for the run of Tune (``hpo.tune.run.sweep_environment``); here the mode goes to ``wandb.init``.
    """
    if mode == "disabled":
        return None
    from hpo.tune.wandb_callback import SweepWandbCallback

    # resume="allow": a trial restored after a driver crash continues its own run (id = trial id).
    kwargs: dict[str, Any] = {"mode": mode, "job_type": "trial", "resume": "allow"}
    if tracking.entity:
        kwargs["entity"] = tracking.entity
    # Offline, finishing a run is a local write: a logger still busy after two minutes is stuck, and the
    # sweep should end rather than wait for Tune's default half hour. Online keeps time to upload.
    timeout = 120 if mode == "offline" else 1800
    return SweepWandbCallback(project=tracking.project, group=group_of(tracking, sweep_name), upload_timeout=timeout, story=story, **kwargs)


@dataclass(frozen=True)
class ModelRef:
    """The promoted model as a W&B artifact: a reference to the Hub revision, or to the dry run's files."""

    name: str
    uri: str
    metadata: dict[str, Any] = field(default_factory=dict)
    checksum: bool = False  # a local folder's files are hashed; a Hub URL is recorded as it is

    def artifact(self, wandb: Any) -> Any:
        art = wandb.Artifact(self.name, type="model", metadata=self.metadata)
        art.add_reference(self.uri, checksum=self.checksum)
        return art


def model_ref(sweep_name: str, repo_id: str | None, commit: str | None, dry_run_dir: str | None, metadata: dict[str, Any]) -> ModelRef:
    if dry_run_dir:
        return ModelRef(f"{sweep_name}-model", Path(dry_run_dir).resolve().as_uri(), metadata, checksum=True)
    return ModelRef(f"{sweep_name}-model", f"https://huggingface.co/{repo_id}/tree/{commit}", metadata)


def sweep_mode(sweep: Sweep, override: str | None) -> str:
    """The W&B mode for runs added to a finished sweep: the command line's, else the sweep's own (a sweep
    that ran offline is not logged online just because a key is set now)."""
    return override or sweep.data.get("wandb_mode") or resolve_mode(sweep.spec.tracking, None)


def tag_winner(sweep: Sweep, trial_id: str, override: str | None, folder: str, wandb_module: Any = None) -> str | None:
    """Add the ``winner`` tag to the promoted trial's run: the run is written again, whole, under its id
    (see ``replay_trial_run``), into ``folder``. Returns the run's local folder."""
    mode = sweep_mode(sweep, override)
    if mode == "disabled":
        return None
    wandb = wandb_module
    if wandb is None:
        import wandb
    from hpo.tune.wandb_callback import replay_trial_run

    spec = sweep.spec
    trial = next(t for t in sweep.trials if t.trial_id == trial_id)
    init_kwargs = {
        "project": spec.tracking.project,
        "entity": spec.tracking.entity,
        "group": group_of(spec.tracking, spec.name),
        "job_type": "trial",
        "name": trial.name,
        "id": trial.trial_id,
        "resume": "allow",
        "allow_val_change": True,
        "config": {**trial.params, "trial_log_path": str(trial.folder)},
        "mode": mode,
        "dir": folder,
        "reinit": "finish_previous",
        "settings": wandb.Settings(silent=True),
    }
    return replay_trial_run(wandb, trial_story(spec, sweep.data), init_kwargs, trial.rounds, trial.outcome, winner=True)


def log_promotion(
    tracking: TrackingSpec,
    sweep_name: str,
    mode: str,
    name: str,
    config: dict,
    summary: dict,
    folder: str,
    wandb_module: Any = None,
    dataset: DatasetRef | None = None,
    model: ModelRef | None = None,
) -> str | None:
    """One more run in the sweep's group, job type ``promotion``: it uses the dataset artifact and logs
    the model artifact (lineage: data -> trials, promotion -> model). Returns the run's local folder."""
    return _group_run(tracking, sweep_name, mode, "promotion", name, config, summary, folder, wandb_module, dataset=dataset, model=model)


def _group_run(
    tracking: TrackingSpec,
    sweep_name: str,
    mode: str,
    job_type: str,
    name: str,
    config: dict,
    summary: dict,
    folder: str,
    wandb_module: Any = None,
    dataset: DatasetRef | None = None,
    model: ModelRef | None = None,
    reinit: str = "finish_previous",
) -> str | None:
    """A run of ``job_type`` in the sweep's group with ``config`` and ``summary``, optionally using the
    dataset artifact and logging a model artifact. Returns the run's local folder (None when disabled)."""
    if mode == "disabled":
        return None
    wandb = wandb_module
    if wandb is None:
        import wandb
    run = wandb.init(
        project=tracking.project,
        entity=tracking.entity,
        group=group_of(tracking, sweep_name),
        job_type=job_type,
        name=name,
        config=config,
        mode=mode,
        dir=folder,
        reinit=reinit,
        settings=wandb.Settings(silent=True),
    )
    run.summary.update(summary)
    if dataset is not None:
        from hpo.tune.wandb_callback import use_artifact

        use_artifact(run, dataset.artifact(wandb))
    if model is not None:
        run.log_artifact(model.artifact(wandb))
    run_dir = getattr(run, "dir", None)
    run.finish()
    return run_dir


# ------------------------------------------------------------------------------- the sweep run
def trials_table_rows(sweep: Sweep) -> tuple[list[str], list[list[Any]]]:
    """The trials as ``hpo status`` lists them (best first, then trials without a valued round):
    columns and rows for the sweep run's W&B table."""
    spec = sweep.spec
    names = list(spec.search_space)
    columns = ["trial", *names, f"best {spec.metric}", "best round", "rounds", "outcome", "trial seconds"]
    ranked = sweep.ranked()
    order = [t for t, _, _ in ranked] + [t for t in sweep.trials if t.best(spec.metric, spec.mode) is None]
    rows = []
    for t in order:
        best = t.best(spec.metric, spec.mode)
        seconds = t.rounds[-1].get("time_total_s") if t.rounds else None
        rows.append([t.trial_id, *(t.params.get(n) for n in names), best[0] if best else None, best[1] if best else None, t.rounds_done, t.outcome, seconds])
    return columns, rows


def front_table_rows(sweep: Sweep) -> tuple[list[str], list[list[Any]]]:
    """The Pareto front of a multi-objective sweep as ``hpo status`` shows it: columns and rows for the sweep
    run's W&B table."""
    columns = ["trial", *(metric for metric, _ in sweep.spec.objective_pairs()), "round", "outcome"]
    return columns, [[t.trial_id, *values, rnd, t.outcome] for t, values, rnd in sweep.front()]


def sweep_run_id(sweep: Sweep) -> str:
    """The sweep run's id: made once and kept in ``hpo/``, so a resumed sweep updates the same run."""
    from hpo.core.storage import META_DIR

    where = sweep.path.child(META_DIR, SWEEP_RUN_FILE)
    try:
        return where.read_json()["run_id"]
    except (FileNotFoundError, KeyError, ValueError):
        import uuid

        run_id = f"sweep-{uuid.uuid4().hex[:12]}"
        where.write_json({"run_id": run_id})
        return run_id


def log_sweep_run(sweep: Sweep, mode: str, wandb_module: Any = None) -> str | None:
    """One run of job type ``sweep`` in the sweep's group: the spec, the search space, the trials table
    (what ``hpo status`` prints) and, with several objectives, the Pareto front, the data's class counts and
    fingerprint, the earlier sweeps it was warm-started from; it logs the dataset artifact.

    Written when a sweep ends and again when it is resumed, under the same id: every write is complete,
    so the last one synced is the run W&B shows. Returns the run's local folder."""
    if mode == "disabled":
        return None
    wandb = wandb_module
    if wandb is None:
        import wandb
    from hpo.core.storage import META_DIR

    spec = sweep.spec
    resolved = spec.model_dump(mode="json")
    run_id = sweep_run_id(sweep)
    folder = sweep.path.mirror(META_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "spec": resolved,
        "search_space": resolved["search_space"],
        "metric": spec.metric,
        "mode": spec.mode,
        "objectives": [{"metric": m, "mode": d} for m, d in spec.objective_pairs()],
        "rungs": spec.scheduler.rungs(),
        "data": {k: sweep.data.get(k) for k in ("fingerprint", "class_counts", "label_names")},
    }
    warm = kept_record(sweep.data)
    if warm:  # the earlier sweeps it started from: paths, trials taken, parameters dropped, configurations tried first
        config[WARM_START_KEY] = warm
    run = wandb.init(
        project=spec.tracking.project,
        entity=spec.tracking.entity,
        group=group_of(spec.tracking, spec.name),
        job_type="sweep",
        name=f"{spec.name}-sweep",
        id=run_id,
        resume="allow",
        config=config,
        mode=mode,
        dir=str(folder),
        reinit="finish_previous",
        settings=wandb.Settings(silent=True),
    )
    from hpo.tune.wandb_callback import outcome_tag

    columns, rows = trials_table_rows(sweep)
    summary: dict[str, Any] = {"trials": wandb.Table(columns=columns, data=rows), "n_trials": len(sweep.trials)}
    summary.update({f"outcome/{outcome_tag(k)}": v for k, v in sweep.counts().items()})
    if warm:
        summary.update({"warm_start/sources": ", ".join(src["path"] for src in warm["sources"]), "warm_start/trials": sum(src["taken"] for src in warm["sources"])})
    if sweep.ranked():
        t, value, rnd = sweep.winner()
        summary.update({f"best {spec.metric}": value, "best round": rnd, "best trial": t.trial_id})
    if spec.multi_objective:  # the trials no other beats on every objective
        columns, rows = front_table_rows(sweep)
        summary.update({"pareto_front": wandb.Table(columns=columns, data=rows), "pareto_front/trials": ", ".join(row[0] for row in rows)})
    run.summary.update(summary)
    ref = dataset_ref(spec, sweep.data)
    if ref is not None:
        run.log_artifact(ref.artifact(wandb))
    run_dir = getattr(run, "dir", None)
    run.finish()
    if not sweep.path.is_local:
        sweep.path.child(META_DIR, "wandb").upload_dir(folder / "wandb")
    return run_dir


def log_baseline(tracking: TrackingSpec, sweep_name: str, mode: str, config: dict, summary: dict, folder: str, wandb_module: Any = None) -> str | None:
    """The sweep's baselines as one more run of its group, job type ``baseline``. Returns the run's folder.
    It is written from a thread of the driver beside other runs: ``create_new`` leaves them open."""
    return _group_run(tracking, sweep_name, mode, "baseline", f"{sweep_name}-baseline", config, summary, folder, wandb_module, reinit="create_new")

"""Data-parallel training on several workers (GPUs, or CPU processes with gloo) with Ray Train's
``TorchTrainer``: for a sweep trial, run inside the Tune trial; for promotion's retrain, from the CLI.

Each worker runs the one training loop (``trainables.training``), which splits every global batch across
the ranks, averages gradients with DDP and gathers evaluation over the whole split. Rank 0 checkpoints.

In a sweep, Tune stays the owner of the trial's rounds and checkpoints (ASHA counts its iterations, the
janitor and ``hpo resume`` work on its checkpoints): Ray's ``TuneReportCallback`` forwards only metrics, so
``_Relay`` forwards each round's metrics *and* the checkpoint Ray Train persisted to the Tune trial, which
reports them with ``tune.report`` (Tune copies the checkpoint into the trial folder). A restarted trial
hands Tune's checkpoint to the workers through the train loop's config, as Ray Train V2 prescribes in
place of ``resume_from_checkpoint``.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ray.train import UserCallback

from trainables.data import SweepData, Tokenized
from trainables.report import RoundReport
from trainables.settings import ResourcesSpec, TrialSettings

RUN_FOLDER = "data-parallel"  # Ray Train's own run folder, inside the trial's folder, removed when it ends


def scaling(resources: ResourcesSpec, workers: int | None = None, use_gpu: bool | None = None) -> Any:
    """Ray Train's ``ScalingConfig`` for ``workers`` processes with ``resources.cpu`` CPUs and one GPU each."""
    from ray.train import ScalingConfig

    gpu = resources.gpu > 0 if use_gpu is None else use_gpu
    return ScalingConfig(
        num_workers=workers or resources.world_size,
        use_gpu=gpu,
        resources_per_worker={"CPU": resources.cpu, **({"GPU": 1} if gpu else {})},
    )


def _backend(use_gpu: bool) -> Any:
    from ray.train.torch import TorchConfig

    return TorchConfig(backend="nccl" if use_gpu else "gloo")


def _worker_device(use_gpu: bool, cpus: float) -> Any:
    import torch

    if use_gpu:
        from ray.train.torch import get_device

        return get_device()
    torch.set_num_threads(max(1, int(cpus)))
    return torch.device("cpu")


# ------------------------------------------------------------------------------------ sweep trials
def _trial_worker(cfg: dict[str, Any]) -> None:
    """One rank of a data-parallel trial (runs in a Ray Train worker)."""
    import ray.train

    from trainables.trial import train_trial

    settings: TrialSettings = cfg["settings"]
    rank = ray.train.get_context().get_world_rank()
    device = _worker_device(settings.resources.gpu > 0, settings.resources.cpu)

    def report(round_report: RoundReport, folder: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(folder)) if folder is not None and rank == 0 else None
        ray.train.report({**round_report.to_result(), "worker_pid": os.getpid()}, checkpoint=checkpoint)

    restore = cfg["restore"]
    if restore is None:
        train_trial(cfg["config"], settings, cfg["data"], cfg["source"], device, None, report, cfg["entered"])
        return
    with restore.as_directory() as folder:
        train_trial(cfg["config"], settings, cfg["data"], cfg["source"], device, folder, report, cfg["entered"])


class _Relay(UserCallback):
    """A Ray Train callback (it runs in Train's controller) that hands every round, with the checkpoint
    Train persisted, to the Tune trial through a queue of one item: the workers go on once Tune took it."""

    def __init__(self, queue: Any):
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        first = dict(metrics[0])  # rank 0's; every rank reports the same gathered evaluation
        first["workers"] = len(metrics)
        first["worker_pids"] = ",".join(str(m.pop("worker_pid", "?")) for m in metrics)
        first.pop("worker_pid", None)
        self.queue.put({"metrics": first, "checkpoint": checkpoint})

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        pass


def run_parallel_trial(config: dict[str, Any], *, settings: TrialSettings, data: SweepData, source: str, storage: dict[str, Any]) -> None:
    """The Tune trial of a data-parallel trial: start a ``TorchTrainer`` over ``settings.resources`` and pass
    each round it reports on to Tune, checkpoint included. ``storage``: where the sweep lives
    (``storage_path`` and, for object storage, ``storage_filesystem``); Train's run goes in the trial's folder."""
    import pyarrow.fs
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty, Queue

    entered = time.time()
    trial = tune.get_context()
    fs = storage.get("storage_filesystem") or pyarrow.fs.LocalFileSystem()
    root = posixpath.join(storage["storage_path"], settings.name, trial.get_trial_name())  # the trial's folder
    _remove(fs, posixpath.join(root, RUN_FOLDER))  # a run left by a killed driver: this trial starts from Tune's checkpoint
    relay = Queue(maxsize=1, actor_options={"num_cpus": 0})
    use_gpu = settings.resources.gpu > 0
    trainer = TorchTrainer(
        _trial_worker,
        train_loop_config={"config": config, "settings": settings, "data": data, "source": source, "restore": tune.get_checkpoint(), "entered": entered},
        scaling_config=scaling(settings.resources),
        torch_config=_backend(use_gpu),
        run_config=RunConfig(
            name=RUN_FOLDER,
            storage_path=root,
            storage_filesystem=fs,
            callbacks=[_Relay(relay)],
            checkpoint_config=CheckpointConfig(num_to_keep=1),  # Tune keeps its own copy of every round's
            failure_config=FailureConfig(max_failures=0),  # Tune retries the trial from its checkpoint
        ),
    )
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as err:  # raised again in the trial, where Tune sees it
            outcome["error"] = err

    runner = threading.Thread(target=fit, name="hpo-torch-trainer", daemon=True)
    runner.start()
    try:
        while True:
            try:
                item = relay.get(timeout=0.5)
            except Empty:
                if runner.is_alive() or not relay.empty():
                    continue
                break
            checkpoint = item["checkpoint"]
            tune.report(item["metrics"], checkpoint=tune.Checkpoint(checkpoint.path, checkpoint.filesystem) if checkpoint else None)
        runner.join()
    finally:
        _remove(fs, posixpath.join(root, RUN_FOLDER))
    if "error" in outcome:
        raise outcome["error"]


def _remove(fs: Any, path: str) -> None:
    import pyarrow.fs

    try:
        if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
            fs.delete_dir(path)
    except OSError:
        pass


# --------------------------------------------------------------------------------------- promotion
def _retrain_worker(cfg: dict[str, Any]) -> None:
    """One rank of promotion's retrain: train for ``rounds`` rounds; rank 0 saves the model."""
    import ray.train
    import torch

    from trainables.trial import build_state
    from trainables.training import train_rounds

    hp, train, special = cfg["hp"], cfg["train"], cfg["special"]
    device = _worker_device(cfg["use_gpu"], cfg["cpus"])
    state = build_state(cfg["source"], cfg["label_names"], hp, len(train), cfg["schedule_rounds"], device)
    weights = torch.from_numpy(cfg["class_weights"]) if cfg["class_weights"] is not None else None
    curve = [figures for figures in train_rounds(state, hp, train, special, cfg["rounds"], device, weights)]
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report({})
        return
    state.model.to("cpu").save_pretrained(cfg["out"])
    with tempfile.TemporaryDirectory() as folder:  # the run's result (Ray Train keeps a result with a checkpoint)
        (Path(folder) / "curve.json").write_text(json.dumps(curve))
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def retrain_parallel(*, source: str, label_names: list[str], hp: Any, train: Tokenized, special: Any, rounds: int, schedule_rounds: int,
                     class_weights: Any, out: Path, workers: int, use_gpu: bool, cpus: float = 1) -> list[dict[str, float]]:
    """Promotion's retrain on ``workers`` data-parallel workers (one GPU each with ``use_gpu``), with the
    trials' training loop; rank 0 saves the model to ``out``. Runs on this machine's own Ray (started here
    if needed), so ``out`` is a folder every worker can write. Returns each round's training figures."""
    import ray
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    scale = scaling(ResourcesSpec(cpu=cpus, gpu=workers if use_gpu else 0, workers=workers), workers, use_gpu)
    with tempfile.TemporaryDirectory(prefix="hpo-retrain-") as runs:  # Train's own run records; the model goes to `out`
        result = TorchTrainer(
            _retrain_worker,
            train_loop_config={"source": source, "label_names": label_names, "hp": hp, "train": train, "special": special, "rounds": rounds,
                               "schedule_rounds": schedule_rounds, "class_weights": class_weights, "out": str(out), "use_gpu": use_gpu, "cpus": cpus},
            scaling_config=scale,
            torch_config=_backend(use_gpu),
            run_config=RunConfig(name="retrain", storage_path=runs),
        ).fit()
        with result.checkpoint.as_directory() as folder:
            return json.loads((Path(folder) / "curve.json").read_text())

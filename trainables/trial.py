"""The Ray Tune trainable. It turns Tune's config into a typed ``TrainingSpec`` on its first line and
then runs the shared training loop, reporting (a ``RoundReport``) and checkpointing after every
evaluation round. What the sweep asks of it comes typed too (``TrialSettings``)."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from trainables.data import SweepData
from trainables.errors import TrialFailed
from trainables.model import load_classifier
from trainables.report import RoundReport, ends_on_patience
from trainables.settings import TrainingSpec, TrialSettings
from trainables.report import LATENCY
from trainables.training import (
    TrainState,
    batch1_latency_ms,
    evaluate,
    new_state,
    pick_device,
    round_slices,
    steps_per_epoch,
    train_rounds,
    world,
)


def planned_steps(hp: TrainingSpec, n_rows: int, rounds: int) -> int:
    """Optimizer steps in ``rounds`` evaluation rounds (the LR schedule decays over them)."""
    per_epoch = steps_per_epoch(n_rows, hp.batch_size)
    sizes = [s.stop - s.start for s in round_slices(per_epoch, hp.rounds_per_epoch)]
    full, part = divmod(rounds, hp.rounds_per_epoch)
    return full * per_epoch + sum(sizes[:part])


def build_state(source: str, label_names: list[str], hp: TrainingSpec, n_rows: int, schedule_rounds: int, device: torch.device) -> TrainState:
    """Seeded fresh classifier on the base weights, with its optimizer and LR schedule."""
    torch.manual_seed(hp.seed)
    model = load_classifier(source, label_names, hp).to(device)
    return new_state(model, hp, planned_steps(hp, n_rows, schedule_rounds))


# What a round's report goes through: Tune's ``tune.report`` in a one-process trial, Ray Train's
# ``ray.train.report`` on each rank of a data-parallel one. ``folder`` holds the round's checkpoint (None on
# ranks other than 0, and for a last report without one).
Report = Callable[[RoundReport, "Path | None"], None]


def run_trial(config: dict[str, Any], *, settings: TrialSettings, data: SweepData, source: str) -> None:
    """One trial in one process: train on ``data.train``, evaluate on ``data.validation`` each round, report.

    A trial with several workers (``resources.workers`` or ``gpu`` above 1) runs the same ``train_trial``
    on Ray Train's ``TorchTrainer``, data-parallel, inside its Tune trial (``trainables.parallel``)."""
    entered = time.time()
    from ray import tune

    torch.set_num_threads(max(1, int(settings.resources.cpu)))

    def report(round_report: RoundReport, folder: Path | None) -> None:
        tune.report(round_report.to_result(), checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)

    checkpoint = tune.get_checkpoint()
    with checkpoint.as_directory() if checkpoint is not None else nullcontext() as restore:
        train_trial(config, settings, data, source, pick_device(settings.resources.gpu > 0), restore, report, entered)


def train_trial(config: dict[str, Any], settings: TrialSettings, data: SweepData, source: str, device: torch.device, restore: str | None, report: Report, entered: float) -> None:
    """The body of every trial, on one process or on each rank: build (or restore from the checkpoint
    folder ``restore``), then train, evaluate, report and checkpoint round by round.

    A trial that cannot go on (NaN loss, out of GPU memory) ends normally with a failed report instead of
    raising: retrying such a config gives the same outcome (Tune would retry an exception)."""
    hp = settings.hyperparams(config)
    data.check(hp.max_length, hp.truncation)
    rounds = settings.planned_rounds(hp.epochs)
    state = build_state(source, data.label_names, hp, len(data.train), rounds, device)
    if restore is not None:
        state.load(Path(restore))
        if converged(state, settings, rounds):
            return  # it had ended on patience when the driver died; its last report says so
    failure = None
    try:
        for figures in train_rounds(state, hp, data.train, data.special, rounds, device):
            if not math.isfinite(figures["train_loss"]):
                failure, at = TrialFailed.diverged(figures["train_loss"], state.rounds_done), state.rounds_done
                break
            if _report_round(state, settings, hp, data, device, figures, rounds, entered, report):
                return  # converged: no improvement for `patience` rounds
    except torch.OutOfMemoryError:  # torch.cuda.OutOfMemoryError is this class
        failure, at = TrialFailed.out_of_memory(hp.batch_size, hp.max_length, settings.resources.gpu), state.rounds_done + 1
    if failure is None:
        return
    del state  # out of the except block: the traceback that held the step's tensors is gone, so their memory is free
    if device.type == "cuda":
        torch.cuda.empty_cache()  # back to the GPU, for the trials that share it
    also = [(o.metric, o.mode) for o in settings.objectives[1:]]
    report(RoundReport.failed(settings.metric, settings.mode, str(failure), at, rounds, also), None)


def converged(state: TrainState, settings: TrialSettings, rounds: int) -> bool:
    """No improvement for ``patience`` rounds, past ASHA's last rung, with rounds still to go."""
    return ends_on_patience(state.rounds_done, state.best_round, rounds, settings.patience, settings.patience_from)


def _report_round(state: TrainState, settings: TrialSettings, hp: TrainingSpec, data: SweepData, device: torch.device, figures: dict, rounds: int, entered: float, report: Report) -> bool:
    """Evaluate, report and checkpoint one round; True when the trial has converged and ends here.
    Every rank evaluates (its share of) the whole validation split and reports; rank 0 checkpoints."""
    metrics = evaluate(state.model, data.validation, data.special, hp, data.label_names, device)
    metrics.pop("val_confusion")
    if settings.measures_latency:
        metrics[LATENCY] = batch1_latency_ms(state.model, data.validation, data.special, hp, device)
    state.note(metrics[settings.metric], settings.mode)
    stop = converged(state, settings, rounds)
    metrics.update(figures)
    if "first_step_unix" in metrics:  # start-up: entering the trial -> first optimizer step done
        metrics["trial_entered_unix"] = entered
        metrics["startup_seconds"] = metrics["first_step_unix"] - entered
    round_report = RoundReport(state.rounds_done, rounds, metrics, converged=stop)
    if world()[0] != 0:
        report(round_report, None)
        return stop
    with tempfile.TemporaryDirectory() as folder:
        state.save(Path(folder))
        (Path(folder) / "metrics.json").write_text(json.dumps(round_report.to_result()))
        report(round_report, Path(folder))
    return stop


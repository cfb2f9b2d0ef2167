"""The one training loop, shared by sweep trials and promotion, and the one evaluation.

Speed choices (each measured in ``benchmarks/``): batches padded to their own longest row, rows of
similar length batched together, no host sync inside the step loop (the loss is summed on the
device and read once per round), bf16 autocast and SDPA attention on a GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainables.report import improves
from trainables.settings import TrainingSpec
from trainables.data import SpecialIds, Tokenized

STATE_FILE = "train_state.pt"


def world() -> tuple[int, int]:
    """(rank, number of ranks) of this process among a trial's data-parallel workers; (0, 1) alone.

    The loop below is the same code either way: with several ranks (``torch.distributed`` initialised,
    as Ray Train's ``TorchTrainer`` does), each global batch is split across the ranks, gradients are
    averaged by ``DistributedDataParallel`` and evaluation covers the whole split, gathered on every rank.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def pick_device(want_gpu: bool) -> torch.device:
    return torch.device("cuda") if want_gpu and torch.cuda.is_available() else torch.device("cpu")


def autocast_dtype(hp: TrainingSpec, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or hp.precision == "fp32":
        return None
    if hp.precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def collate(data: Tokenized, rows: np.ndarray, max_length: int, special: SpecialIds, truncation: str = "head") -> dict[str, torch.Tensor]:
    """[CLS] tokens [SEP], a longer text cut to ``max_length`` as ``truncation`` says (``trainables.data.keep``),
    padded to the longest row of this batch.

    A batch without padding (common with length grouping) gets no attention mask, which lets SDPA
    take its unmasked fast path; the result is the same.
    """
    data.check(truncation)
    lengths = data.lengths(max_length)[rows]
    width = int(lengths.max())
    ids = np.full((len(rows), width), special.pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for j, (i, n) in enumerate(zip(rows, lengths)):
        ids[j, 0] = special.cls
        ids[j, 1 : n - 1] = data.row(i, max_length, truncation)
        ids[j, n - 1] = special.sep
        mask[j, :n] = 1
    batch = {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(data.labels[rows])}
    if lengths.min() < width:
        batch["attention_mask"] = torch.from_numpy(mask)
    return batch


def epoch_batches(data: Tokenized, hp: TrainingSpec, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch, a pure function of (seed, epoch) so a resumed trial sees the same order.

    With length grouping, rows are shuffled, cut into pools of 50 batches, each pool sorted by length
    and cut into batches, and the batch order shuffled again: little padding, still random. (A text's
    length at ``max_length`` is the same under every truncation strategy.)
    """
    rng = np.random.default_rng([hp.seed, epoch])
    order = rng.permutation(len(data))
    bs = hp.batch_size
    if hp.length_grouping:
        lengths = data.lengths(hp.max_length)
        pool = bs * 50
        pools = [order[i : i + pool] for i in range(0, len(order), pool)]
        order = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in pools])
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    if hp.length_grouping:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


@dataclass
class TrainState:
    """Everything a trial needs to continue exactly where it stopped."""

    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rounds_done: int = 0
    best_value: float | None = None  # the best evaluation so far and its round (for patience)
    best_round: int = 0

    def note(self, value: float, mode: str) -> None:
        """Record this round's value of the sweep's metric; earlier rounds win ties."""
        if improves(value, self.best_value, mode):
            self.best_value, self.best_round = value, self.rounds_done

    def save(self, folder: Path) -> None:
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rounds_done": self.rounds_done,
                "best_value": self.best_value,
                "best_round": self.best_round,
            },
            Path(folder) / STATE_FILE,
        )

    def load(self, folder: Path) -> None:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rounds_done = int(state["rounds_done"])
        self.best_value, self.best_round = state.get("best_value"), int(state.get("best_round", 0))


def new_state(model: Any, hp: TrainingSpec, steps_total: int) -> TrainState:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    # fused: one kernel for all parameters, on GPU and CPU (6x faster steps for the embedding-heavy preset)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hp.learning_rate,
        fused=True,
    )
    warmup = int(hp.warmup_ratio * steps_total)

    def lr_factor(step: int) -> float:  # linear warmup, then linear decay to zero
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (steps_total - step) / max(1, steps_total - warmup))

    return TrainState(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor))


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    return math.ceil(n_rows / batch_size)


def round_slices(n_batches: int, rounds_per_epoch: int) -> list[slice]:
    edges = np.linspace(0, n_batches, rounds_per_epoch + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def train_rounds(
    state: TrainState,
    hp: TrainingSpec,
    data: Tokenized,
    special: SpecialIds,
    total_rounds: int,
    device: torch.device,
    class_weights: torch.Tensor | None = None,
) -> Iterator[dict[str, float]]:
    """Train round by round from ``state.rounds_done``; yield the round's training figures after each.

    The caller evaluates, reports and checkpoints between rounds (the trial) or just runs to the end
    (promotion). Dropout randomness is reseeded per round so a resumed round matches a fresh one.
    """
    model = state.model
    rank, ranks = world()
    if ranks > 1:  # gradients all-reduced (averaged) across the ranks during backward
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    per_epoch = steps_per_epoch(len(data), hp.batch_size)
    slices = round_slices(per_epoch, hp.rounds_per_epoch)
    dtype = autocast_dtype(hp, device)
    weights = class_weights.to(device) if class_weights is not None else None
    row_weights = class_weights.numpy() if class_weights is not None else None
    first_step_unix = None  # when this call's first optimizer step finished (start-up measurement)
    while state.rounds_done < total_rounds:
        r = state.rounds_done
        epoch, part = divmod(r, hp.rounds_per_epoch)
        batches = epoch_batches(data, hp, epoch)[slices[part]]
        torch.manual_seed(hp.seed * 100_003 + r)
        model.train()
        loss_sum = torch.zeros((), device=device)
        start = time.perf_counter()
        for rows in batches:
            # The loss of the global batch is the sum over its rows divided by their count (or, with class
            # weights, their summed weight), whichever rank holds a row; this rank's share of it is
            # multiplied by the number of ranks because DDP averages the gradients of the ranks.
            total = float(len(rows)) if row_weights is None else float(row_weights[data.labels[rows]].sum())
            mine = rows[rank::ranks]
            scale = ranks / total
            if len(mine) == 0:  # a last batch smaller than the ranks: take part in the all-reduce with no loss
                mine, scale = rows[:1], 0.0
            batch = {k: v.to(device, non_blocking=True) for k, v in collate(data, mine, hp.max_length, special, hp.truncation).items()}
            labels = batch.pop("labels")
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(**batch).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=weights, reduction="sum") * scale
            loss.backward()
            state.optimizer.step()
            state.scheduler.step()
            state.optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() / ranks
            if first_step_unix is None:
                first_step_unix = time.time()
        if ranks > 1:  # each rank holds its rows' part of every batch's loss
            torch.distributed.all_reduce(loss_sum)
        seconds = time.perf_counter() - start
        state.rounds_done += 1
        samples = sum(len(b) for b in batches)
        figures = {
            "train_loss": float(loss_sum) / max(1, len(batches)),  # the one host sync of the round
            "epoch": state.rounds_done / hp.rounds_per_epoch,
            "train_seconds": seconds,
            "train_samples_per_s": samples / seconds if seconds > 0 else 0.0,
        }
        if first_step_unix is not None and first_step_unix > 0:
            figures["first_step_unix"] = first_step_unix
            first_step_unix = -1.0  # reported once per call
        yield figures


@torch.no_grad()
def predict(
    model: Any, data: Tokenized, special: SpecialIds, max_length: int, batch_size: int, device: torch.device, dtype: torch.dtype | None = None, truncation: str = "head"
) -> np.ndarray:
    """Logits (float32, in the data's row order) of the texts cut to ``max_length`` by ``truncation``; rows are
    batched by length to pad little. With several ranks each predicts every n-th row and the logits of all
    rows are gathered on every rank."""
    model.eval()
    rank, ranks = world()
    order = np.argsort(data.lengths(max_length), kind="stable")[rank::ranks]
    out = torch.zeros((len(data), model.config.num_labels), dtype=torch.float32)
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        batch = collate(data, rows, max_length, special, truncation)
        batch.pop("labels")
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(**batch).logits
        out[torch.from_numpy(rows)] = logits.float().cpu()
    if ranks > 1:  # the ranks' rows are disjoint and the rest zeros: the sum is every row's logits
        out = out.to(device)
        torch.distributed.all_reduce(out)
        out = out.cpu()
    return out.numpy()


def classification_metrics(logits: np.ndarray, labels: np.ndarray, label_names: list[str], prefix: str) -> dict[str, Any]:
    """accuracy, macro-F1, loss, per-class precision/recall and the confusion matrix (rows: truth)."""
    n = len(label_names)
    pred = logits.argmax(axis=1)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    tp = np.diag(confusion).astype(float)
    recall = np.divide(tp, confusion.sum(axis=1), out=np.zeros(n), where=confusion.sum(axis=1) > 0)
    precision = np.divide(tp, confusion.sum(axis=0), out=np.zeros(n), where=confusion.sum(axis=0) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    metrics: dict[str, Any] = {
        f"{prefix}_accuracy": float((pred == labels).mean()),
        f"{prefix}_f1_macro": float(f1.mean()),
        f"{prefix}_loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        # 1.0: every example put into one class (a model that has learned nothing, or collapsed)
        f"{prefix}_top_class_share": float(confusion.sum(axis=0).max() / max(1, len(labels))),
    }
    for i, name in enumerate(label_names):
        metrics[f"{prefix}_recall_{name}"] = float(recall[i])
        metrics[f"{prefix}_precision_{name}"] = float(precision[i])
    metrics[f"{prefix}_confusion"] = confusion.tolist()
    return metrics


def evaluate(model: Any, data: Tokenized, special: SpecialIds, hp: TrainingSpec, label_names: list[str], device: torch.device, prefix: str = "val") -> dict[str, Any]:
    start = time.perf_counter()
    logits = predict(model, data, special, hp.max_length, hp.eval_batch_size, device, autocast_dtype(hp, device), hp.truncation)
    metrics = classification_metrics(logits, data.labels, label_names, prefix)
    metrics[f"{prefix}_seconds"] = time.perf_counter() - start
    return metrics


# ----------------------------------------------------------------------------------------- latency
LATENCY_TEXTS = 32  # validation texts a trial's batch-1 latency is measured on (the split's first ones)
LATENCY_WARMUP = 2  # untimed calls before them


def timed_calls(call: Callable[[Any], Any], items: Sequence[Any], warmup: int, device: str) -> list[float]:
    """Seconds of ``call`` on each of ``items``, one at a time, after ``warmup`` untimed calls on the first items;
    on a GPU (``device`` "cuda") each call is waited for. The one latency measurement: a trial's model here,
    promotion's ``transformers`` pipeline on the promoted model."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for item in items[:warmup]:
        call(item)
    sync()
    seconds = []
    for item in items:
        start = time.perf_counter()
        call(item)
        sync()
        seconds.append(time.perf_counter() - start)
    return seconds


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of call times, in milliseconds (two decimals)."""
    return round(float(np.percentile(seconds, q)) * 1000, 2)


@torch.no_grad()
def batch1_latency_ms(model: Any, data: Tokenized, special: SpecialIds, hp: TrainingSpec, device: torch.device, texts: int = LATENCY_TEXTS) -> float:
    """p95 milliseconds of the model on one validation text at a time, run as ``predict`` runs it (the same
    cutting to ``max_length``, device and autocast): the first ``texts`` texts of ``data``, after
    ``LATENCY_WARMUP`` untimed calls."""
    model.eval()
    dtype = autocast_dtype(hp, device)

    def one(row: int) -> None:
        batch = collate(data, np.array([row]), hp.max_length, special, hp.truncation)
        batch.pop("labels")
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(**batch)

    return percentile_ms(timed_calls(one, list(range(min(texts, len(data)))), LATENCY_WARMUP, device.type), 95)

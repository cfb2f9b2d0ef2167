"""Training samples/s: our loop (``train_rounds``) against the usual ``transformers.Trainer`` setup.

Both sides train the same freshly seeded classifier (``load_classifier`` on the same base folder) on the
same stratified sample of the quickstart's training split, batch 16, max length 512, fp32, with the
same torch thread count. What differs is only what the comparison is about:

* ours: texts tokenized once without padding, each batch padded to its own longest row, rows of
  similar length batched together, our step loop;
* usual: ``tokenizer(..., padding="max_length", truncation=True, max_length=512)``, random batches,
  ``Trainer.train()`` with logging, saving and evaluation off.

Only training is timed (model load, tokenization and the Trainer's construction are not). The sides
alternate (A B A B ...) after one untimed warm-up of each. On a CUDA GPU a third side trains the
``distilbert-base-uncased`` architecture (random init) with our loop in bf16 and reports MFU.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._mfu import DISTILBERT_BASE, peak_bf16, training_flops
from benchmarks._common import QUICKSTART, command_line, fmt, fmt_stat, machine_info, ratio, summarize, with_overrides, write_outputs

MAX_LENGTH = 512
BATCH = 16
WARMUP_TEXTS = 32  # two batches: first-call costs (allocator, kernels, Trainer/accelerate set-up) out of the timings

def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _prepared(storage: str) -> tuple[Any, Any, Any]:
    """The quickstart's data prepared by the product (tokenized once to 512), and the fixed settings."""
    from hpo.core.spec import load_spec
    from hpo.sweep.prepare import prepare

    spec = load_spec(QUICKSTART, {"name": "bench-throughput", "storage": storage})
    spec = with_overrides(
        spec,
        # One round = one pass over the sample. precision fp32: the A/B compares padding, grouping and
        # loop, not number formats (the Trainer side runs fp32 too).
        {"training": {"max_length": MAX_LENGTH, "batch_size": BATCH, "precision": "fp32", "length_grouping": True, "rounds_per_epoch": 1}},
    )
    prepared = prepare(spec, echo=lambda msg: print(f"  {msg}", flush=True))
    return spec, prepared, spec.training


def _padding(data: Any, hp: Any) -> dict[str, int]:
    """Tokens our loop feeds the model (per-batch padding with our batches) against real tokens."""
    from trainables.training import epoch_batches

    lengths = data.lengths(hp.max_length)
    batches = epoch_batches(data, hp, 0)
    return {
        "real_tokens": int(lengths.sum()),
        "padded_tokens": int(sum(len(b) * int(lengths[b].max()) for b in batches)),
        "batches": len(batches),
    }


def _run_ours(source: str, label_names: list[str], hp: Any, data: Any, special: Any, device: Any, threads: int) -> dict[str, Any]:
    import torch

    from trainables.trial import build_state
    from trainables.training import train_rounds

    torch.set_num_threads(threads)
    state = build_state(source, label_names, hp, len(data), 1, device)
    _sync(device)
    start = time.perf_counter()
    figures = list(train_rounds(state, hp, data, special, 1, device))[-1]  # train_loss is read: one device sync
    _sync(device)
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds,
        "samples_per_s": len(data) / seconds,
        "loop_train_seconds": figures["train_seconds"],
        "train_loss": figures["train_loss"],
        "torch_threads_seen": torch.get_num_threads(),
    }
    del state
    return out


def _usual_dataset(tokenizer: Any, texts: list[str], labels: np.ndarray) -> Any:
    """The tutorial recipe: a ``datasets.Dataset`` mapped with fixed 512 padding."""
    import datasets

    ds = datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()})
    return ds.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=MAX_LENGTH), batched=True)


def _run_usual(source: str, label_names: list[str], hp: Any, dataset: Any, tokenizer: Any, device: Any, threads: int, folder: str, bf16: bool = False) -> dict[str, Any]:
    """``Trainer.train()`` for one epoch over ``dataset`` (rows already padded to max length), timed;
    ``bf16``: Trainer's own bf16 mixed precision (on a GPU)."""
    import torch
    from transformers import PrinterCallback, Trainer

    from trainables.model import load_classifier

    torch.set_num_threads(threads)
    torch.manual_seed(hp.seed)  # the same initial head as build_state draws
    model = load_classifier(source, label_names, hp)
    args, ignored = _training_arguments(
        output_dir=folder,
        per_device_train_batch_size=hp.batch_size,
        num_train_epochs=1,
        learning_rate=hp.learning_rate,
        weight_decay=hp.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=0,
        seed=hp.seed,
        bf16=bf16,
        fp16=False,
        train_sampling_strategy="random",  # transformers 5's spelling (and its default); no length grouping
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=device.type != "cuda",
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict; nothing else is logged
    torch.set_num_threads(threads)  # in case anything in the Trainer's set-up changed it
    _sync(device)
    start = time.perf_counter()
    result = trainer.train()
    _sync(device)
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds,
        "samples_per_s": len(dataset) / seconds,
        "trainer_samples_per_s": result.metrics.get("train_samples_per_second"),
        "train_loss": result.training_loss,
        "torch_threads_seen": torch.get_num_threads(),
    }
    meta = {"optim": getattr(args.optim, "value", str(args.optim)), "max_grad_norm": args.max_grad_norm, "bf16": args.bf16,
            "train_sampling_strategy": getattr(args, "train_sampling_strategy", None), "arguments_ignored": ignored}
    del trainer, model
    return {**out, "trainer_args": meta}


def _training_arguments(**kwargs: Any) -> tuple[Any, list[str]]:
    """``TrainingArguments`` from the arguments this transformers release knows (a GPU machine may carry an
    older one), and the names of those it does not know, which stay at its defaults."""
    import dataclasses

    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    return TrainingArguments(**{k: v for k, v in kwargs.items() if k in known}), sorted(set(kwargs) - known)


def _flops(model: Any, data: Any, hp: Any) -> dict[str, float]:
    """Training FLOPs of one pass over ``data`` (``benchmarks._mfu.FLOPS_FORMULA``), on real tokens and as padded."""
    from trainables.training import epoch_batches

    return training_flops(model, data.lengths(hp.max_length), epoch_batches(data, hp, 0))


def _base_source() -> str:
    """The folder of the distilbert-base-shaped model, built (once, cached) by the product's preset code."""
    from hpo.core.spec import ModelSpec, OfflinePreset
    from trainables.model import base_source

    return base_source(ModelSpec(offline_preset=OfflinePreset(**DISTILBERT_BASE)))


def _mfu(source: str, label_names: list[str], hp: Any, data: Any, seconds: list[float], gpu: str, peak_override: float | None) -> dict[str, Any]:
    from trainables.model import load_classifier

    flops = _flops(load_classifier(source, label_names, hp), data, hp)
    peak = peak_override or (peak_bf16(gpu) or (None,))[0]
    med = float(np.median(seconds))
    out: dict[str, Any] = {**flops, "peak_bf16_tflops": peak, "peak_source": "--peak-tflops" if peak_override else "table by device name"}
    out["achieved_tflops_real"] = flops["flops_real_tokens"] / med / 1e12
    out["achieved_tflops_padded"] = flops["flops_padded"] / med / 1e12
    out["mfu_real_tokens"] = out["achieved_tflops_real"] / peak if peak else None
    out["mfu_padded"] = out["achieved_tflops_padded"] / peak if peak else None
    return out


def run(out: Path, quick: bool, reps: int, threads: int, peak_tflops: float | None = None) -> dict[str, Any]:
    # One GPU for every side: with several visible, Trainer would wrap the model in DataParallel and
    # train 16 rows per GPU. Set before CUDA starts in this process; the sweeps' children get it back.
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if saved is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    try:
        return _measure(out, quick, reps, threads, peak_tflops)
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)


def _measure(out: Path, quick: bool, reps: int, threads: int, peak_tflops: float | None) -> dict[str, Any]:
    import torch
    from transformers.utils import logging as hf_logging

    from trainables.data import stratified_sample
    from trainables.training import pick_device

    hf_logging.disable_progress_bar()  # from_pretrained's "Loading weights" bar, once per run
    torch.set_num_threads(threads)
    machine = machine_info()
    n = 128 if quick else 1024
    device = pick_device(True)
    print(f"throughput: {n} texts per run, batch {BATCH}, max_length {MAX_LENGTH}, {threads} torch threads, {reps} repetition(s), device {device}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hpo-bench-tp-") as tmp:
        spec, prepared, hp = _prepared(tmp)
        pd = prepared.data
        idx = stratified_sample(pd.train.labels, n, spec.data.seed)  # never the first n rows: the file is label-sorted
        ours_data = pd.train.select(idx)
        usual_ds = _usual_dataset(prepared.tokenizer, [prepared.splits.train.texts[i] for i in idx], pd.train.labels[idx])
        warm_ours = pd.train.select(idx[:WARMUP_TEXTS])
        warm_usual = usual_ds.select(range(min(WARMUP_TEXTS, len(usual_ds))))
        sides: dict[str, tuple[Any, Any, Any]] = {  # name -> (run, warm-up input, timed input)
            "ours": (lambda d: _run_ours(prepared.source, pd.label_names, hp, d, pd.special, device, threads), warm_ours, ours_data),
            "usual": (lambda d: _run_usual(prepared.source, pd.label_names, hp, d, prepared.tokenizer, device, threads, tmp), warm_usual, usual_ds),
        }
        gpu_hp = gpu_source = None
        if device.type == "cuda":
            gpu_hp, gpu_source = spec.training.updated({"precision": "bf16"}), _base_source()
            sides["base_bf16"] = (lambda d: _run_ours(gpu_source, pd.label_names, gpu_hp, d, pd.special, device, threads), warm_ours, ours_data)
        for name, (fn, warm, _) in sides.items():
            print(f"  warm-up {name}", flush=True)
            fn(warm)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for rep in range(reps):
            for name, (fn, _, timed) in sides.items():  # alternate the sides so drift on a shared machine hits both
                r = fn(timed)
                runs[name].append(r)
                print(f"  rep {rep + 1}/{reps} {name:>9}: {r['samples_per_s']:8.1f} samples/s ({r['seconds']:.1f}s)", flush=True)
        tokens = {
            "ours": _padding(ours_data, hp),
            "usual": {"real_tokens": int(sum(sum(m) for m in usual_ds["attention_mask"])), "padded_tokens": len(usual_ds) * MAX_LENGTH},
        }
        payload = _payload(machine, n, reps, threads, str(device), hp, runs, tokens)
        if gpu_source is not None:
            seconds = [r["seconds"] for r in runs["base_bf16"]]
            payload["sides"]["base_bf16"]["mfu"] = _mfu(gpu_source, pd.label_names, gpu_hp, ours_data, seconds, machine["gpu"], peak_tflops)
    payload["command"] = command_line()
    write_outputs(out, "throughput-quick" if quick else "throughput", payload, markdown(payload))
    return payload


def _payload(machine: dict, n: int, reps: int, threads: int, device: str, hp: Any, runs: dict, tokens: dict) -> dict[str, Any]:
    sides = {}
    for name, rs in runs.items():
        sides[name] = {"samples_per_s": summarize([r["samples_per_s"] for r in rs]), "seconds": summarize([r["seconds"] for r in rs]), "runs": rs}
    ours, usual = (sides[k]["samples_per_s"]["median"] for k in ("ours", "usual"))
    paired = [a["samples_per_s"] / b["samples_per_s"] for a, b in zip(runs["ours"], runs["usual"])]
    if tokens["ours"]["real_tokens"] != tokens["usual"]["real_tokens"]:
        print(f"  warning: the two sides see different real token counts: {tokens}", flush=True)
    return {
        "benchmark": "throughput",
        "machine": machine,
        "settings": {
            "texts_per_run": n, "repetitions": reps, "torch_threads": threads, "device": device, "batch_size": hp.batch_size,
            "max_length": hp.max_length, "precision": "fp32 (base_bf16: bf16 autocast)", "data": "quickstart train split, stratified sample (seed = data.seed)",
            "model": "quickstart offline preset (2 layers, dim 64), load_classifier, seed training.seed",
            "timed": "training only: train_rounds(...) / Trainer.train(); model load, tokenization and Trainer construction excluded",
        },
        "tokens": tokens,
        "sides": sides,
        "ratio_of_medians_ours_over_usual": ratio(ours, usual),
        "paired_ratios": summarize(paired),
    }


def _pad(tokens: dict[str, int]) -> float:
    """Tokens the model computed per real token (1.0 = no padding)."""
    return tokens["padded_tokens"] / max(1, tokens["real_tokens"])


def markdown(p: dict[str, Any]) -> str:
    s, m, sides, tok = p["settings"], p["machine"], p["sides"], p["tokens"]
    where = m["gpu"] or f"{m['cpus_usable']} CPU cores ({m['cpu_model']})"
    lines = [
        f"**Training throughput**, {s['texts_per_run']} IMDB-sample reviews per run, batch {s['batch_size']}, max length "
        f"{s['max_length']}, fp32, {s['torch_threads']} torch threads, {where}; median of {s['repetitions']} alternating "
        "run(s) (min–max):",
        "",
        "| setup | samples/s | tokens computed per real token |",
        "|---|---:|---:|",
        f"| ours: `train_rounds`, per-batch padding + length grouping | {fmt_stat(sides['ours']['samples_per_s'])} | {_pad(tok['ours']):.2f} |",
        f"| usual: `Trainer`, `padding=\"max_length\"`, random batches | {fmt_stat(sides['usual']['samples_per_s'])} | {_pad(tok['usual']):.2f} |",
        f"| **ours / usual** | **{fmt(p['ratio_of_medians_ours_over_usual'], 2)}×** (per-pair {fmt(p['paired_ratios']['min'], 2)}–{fmt(p['paired_ratios']['max'], 2)}) | |",
    ]
    if "base_bf16" in sides:
        b = sides["base_bf16"]
        mfu = b.get("mfu", {})
        mfu_s = "n/a (unknown GPU peak; pass --peak-tflops)" if mfu.get("mfu_real_tokens") is None else f"{100 * mfu['mfu_real_tokens']:.1f}% (padded: {100 * mfu['mfu_padded']:.1f}%)"
        lines += [
            "",
            f"distilbert-base-uncased shapes (random init), our loop, bf16 autocast, same texts: {fmt_stat(b['samples_per_s'])} samples/s, "
            f"{fmt(mfu.get('achieved_tflops_real'), 1)} TFLOP/s, MFU {mfu_s} of {fmt(mfu.get('peak_bf16_tflops'), 0)} TFLOP/s dense bf16.",
        ]
    lines += ["", f"Measured {m['date_utc']} with torch {m['versions']['torch']}, transformers {m['versions']['transformers']}:", "", f"```bash\n{p['command']}\n```"]
    return "\n".join(lines)

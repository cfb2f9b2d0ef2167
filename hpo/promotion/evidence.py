"""What promotion measures beside the test metrics, for the console, the gate and the card: the baselines
refitted on the winner's training set and scored on the same test split, the leakage the data check
found, calibration, latency and size on this machine, and what the sweep and the retrain cost."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hpo.sweep import baseline

from hpo.analysis import cost
from hpo.core.calibration import ECE_BINS

LATENCY_CALLS = 50  # batch-1 calls timed (after WARMUP)
WARMUP = 5
BATCH = 32
BATCHES = 4  # batches of BATCH timed for throughput


# ----------------------------------------------------------------------------------- measuring
def collect(sweep: Any, splits: Any, metrics: dict[str, Any], model_dir: Path, marker: dict[str, Any], echo: Callable[[str], None]) -> dict[str, Any]:
    """Everything the card reports beyond the test metrics (``splits``: the promotion's ``Splits``)."""
    return {
        "model_accuracy": metrics["test_accuracy"],
        "model_f1_macro": metrics["test_f1_macro"],
        "baselines": baselines_on_test(sweep, splits, echo),
        "duplicates": splits.duplicates,
        "calibration": {"ece": metrics["test_ece"], "brier": metrics["test_brier"], "bins": ECE_BINS, "texts": len(splits.test)},
        "serving": {**serving(model_dir, splits.test.texts, sweep.spec.data.seed), "truncation": marker["training"].get("truncation", "head")},
        "cost": cost.summary(cost.sweep_cost(sweep), marker.get("retrain")),
    }


def baselines_on_test(sweep: Any, splits: Any, echo: Callable[[str], None]) -> dict[str, Any]:
    """The TF-IDF baseline (the C the sweep chose on validation) refitted on the training set the winner
    was retrained on (train + validation, balanced the same way), scored on the test split."""
    from trainables.data import balance

    spec = sweep.spec
    stored = baseline.read(sweep.path)
    if stored is None:  # a sweep from before baselines, or one whose baseline thread failed: choose C now
        echo("the sweep has no stored baselines; choosing the TF-IDF baseline's C on the validation split now")
        stored = baseline.sweep_baselines(splits, spec.metric, spec.mode)
    full = splits.full_train()
    idx, weights, _ = balance(full.labels, splits.label_names, spec.promotion.balance, spec.data.seed)
    return {"validation": stored, **baseline.refit_and_score(full.subset(idx), weights, splits.test, splits.label_names, stored["tfidf"]["C"])}


def hardware() -> dict[str, Any]:
    """What the latency was measured on: the GPU's name, or the CPU's model and torch's threads."""
    import torch

    if torch.cuda.is_available():
        return {"device": "cuda", "name": torch.cuda.get_device_name(0)}
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"device": "cpu", "name": name, "threads": torch.get_num_threads(), "cores": os.cpu_count()}


def model_size(folder: Path) -> dict[str, Any]:
    weights = folder / "model.safetensors"
    files = [p for p in folder.iterdir() if p.is_file() and p.name not in ("README.md", "provenance.json", "promotion.json")]
    return {"weights_mb": round(weights.stat().st_size / 1e6, 2), "folder_mb": round(sum(p.stat().st_size for p in files) / 1e6, 2)}


def serving(folder: Path, texts: list[str], seed: int) -> dict[str, Any]:
    """p50 / p95 latency of ``pipeline("text-classification")`` at batch 1 and its throughput at batch 32
    on test texts, on this machine (its GPU when it has one), and the model's size on disk."""
    from transformers import pipeline

    from trainables.training import percentile_ms, timed_calls

    hw = hardware()
    clf = pipeline("text-classification", model=str(folder), device=0 if hw["device"] == "cuda" else "cpu")
    rng = np.random.default_rng(seed)
    sample = [texts[i] for i in rng.choice(len(texts), size=min(len(texts), BATCH * BATCHES), replace=len(texts) < BATCH * BATCHES)]
    single = timed_calls(lambda text: clf(text, truncation=True), (sample * 2)[:LATENCY_CALLS], WARMUP, hw["device"])
    (seconds,) = timed_calls(lambda texts: clf(texts, truncation=True, batch_size=BATCH), [sample], 0, hw["device"])
    return {
        "hardware": hw,
        "batch1_p50_ms": percentile_ms(single, 50),
        "batch1_p95_ms": percentile_ms(single, 95),
        "batch1_calls": len(single),
        "batch32_texts_per_s": round(len(sample) / seconds, 1),
        "batch32_texts": len(sample),
        "parameters": int(clf.model.num_parameters()),
        **model_size(folder),
    }


# ----------------------------------------------------------------------------------- gate and output
def print_evidence(evidence: dict[str, Any], gate: Any, echo: Callable[[str], None]) -> None:
    from trainables.data import describe_duplicates

    b = evidence["baselines"]
    model = evidence["model_accuracy"]
    tfidf, maj = b["tfidf"], b["majority"]
    echo(f"baselines, refitted on the same {b['train_texts']} training texts and scored on the same {b['test_texts']} test texts:")
    rows = [
        ("this model", model, evidence["model_f1_macro"]),
        (f"{baseline.TFIDF_NAME} (C={tfidf['C']:g})", tfidf["test_accuracy"], tfidf["test_f1_macro"]),
        (f"majority class ({maj['label']})", maj["test_accuracy"], maj["test_f1_macro"]),
    ]
    width = max(len(name) for name, _, _ in rows)
    for name, acc, f1 in rows:
        echo(f"  {name.ljust(width)}  test accuracy {acc:.4f}, macro-F1 {f1:.4f}")
    points = (model - tfidf["test_accuracy"]) * 100
    if points > 0:
        echo(f"  the model beats the TF-IDF baseline by {points:.2f} points")
    else:
        allowed = points >= gate.min_lift_over_baseline
        echo(
            f"  the model does NOT beat the TF-IDF baseline ({points:+.2f} points)"
            + (f"; promotion.gate.min_lift_over_baseline is {gate.min_lift_over_baseline:g}, so the gate lets it through" if allowed and gate.enabled else "")
        )
    echo(describe_duplicates(evidence["duplicates"]))
    c = evidence["calibration"]
    echo(f"calibration on the test split: expected calibration error {c['ece']:.4f} ({c['bins']} bins), Brier score {c['brier']:.4f}")
    s = evidence["serving"]
    echo(
        f"serving on {_hardware(s['hardware'])}: batch 1 p50 {s['batch1_p50_ms']:.1f} ms, p95 {s['batch1_p95_ms']:.1f} ms; "
        f"batch {BATCH} {s['batch32_texts_per_s']:.0f} texts/s; {s['parameters']:,} parameters, {s['weights_mb']:.1f} MB of weights, {s['folder_mb']:.1f} MB in all"
    )
    for line in _cost_lines(evidence["cost"]):
        echo(line)


def _hardware(hw: dict[str, Any]) -> str:
    if hw["device"] == "cuda":
        return f"GPU {hw['name']}"
    return f"CPU {hw['name']}, {hw['threads']} torch thread(s) of {hw['cores']} cores"


def _cost_lines(c: dict[str, Any]) -> list[str]:
    lines = [
        f"cost: {c['trial_seconds']:.0f} trial-s over {c['trials']} trials ({c['cpu_seconds']:.0f} CPU-s, {c['gpu_seconds']:.0f} GPU-s); "
        f"early stopping saved {c['early_stopping_saved']:.0%} against running every trial to its planned rounds (estimated {c['full_run_trial_seconds']:.0f} trial-s)"
    ]
    r = c.get("retrain")
    if r:
        lines.append(f"  retrain: {r['seconds']:.0f} s on {r['device']}, {r['share']:.0%} of the sweep's and retrain's seconds")
    return lines


def wandb_summary(evidence: dict[str, Any]) -> dict[str, float]:
    """The evidence's headline figures for the promotion's W&B run."""
    if not evidence:
        return {}
    b, s, c = evidence["baselines"], evidence["serving"], evidence["cost"]
    return {
        "baseline_tfidf_test_accuracy": b["tfidf"]["test_accuracy"],
        "baseline_majority_test_accuracy": b["majority"]["test_accuracy"],
        "test_duplicates_dropped": float(evidence["duplicates"].get("test_dropped", 0)),
        "latency_batch1_p50_ms": s["batch1_p50_ms"],
        "latency_batch1_p95_ms": s["batch1_p95_ms"],
        "throughput_batch32_texts_per_s": s["batch32_texts_per_s"],
        "sweep_trial_seconds": c["trial_seconds"],
        "sweep_gpu_seconds": c["gpu_seconds"],
    }


def _cut(serving: dict[str, Any]) -> str:
    """How the latency's test texts were cut: as in training, or for a model trained on both ends of its texts
    (which a pipeline cannot keep) to the same length, which costs the same."""
    if serving.get("truncation") != "head_tail":
        return "truncated as in training"
    return "truncated to the trained length (the pipeline keeps their head where training kept head and tail: as many tokens)"


def card_sections(evidence: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The card's sections on baselines, leakage, calibration, latency and size, and cost (markdown)."""
    from trainables.data import describe_duplicates

    b, d, c, s, k = evidence["baselines"], evidence["duplicates"], evidence["calibration"], evidence["serving"], evidence["cost"]
    tfidf, maj = b["tfidf"], b["majority"]
    model = metrics["test_accuracy"]
    points = lambda acc: f"{(model - acc) * 100:+.2f}"  # noqa: E731
    verdict = "beats" if model > tfidf["test_accuracy"] else "does **not** beat"
    within = ", ".join(f"{split} {n}" for split, n in d.get("within", {}).items())
    retrain = k.get("retrain")
    per_trial = "\n".join(f"| `{t['trial_id']}` | {t['rounds']}/{t['planned']} | {t['seconds']:.0f} | {t['gpu_seconds']:.0f} |" for t in k["per_trial"])
    hw = _hardware(s["hardware"])
    return f"""
## Against baselines ({b['test_texts']} test texts)

Both baselines were refitted on the same {b['train_texts']} training texts as this model and scored on the same test split.
This model {verdict} the TF-IDF baseline.

| model | test accuracy | test macro-F1 | this model's lift (points) |
|---|---|---|---|
| this model | {model:.4f} | {metrics['test_f1_macro']:.4f} | |
| {baseline.TFIDF_NAME} (word 1-2-grams, C={tfidf['C']:g} chosen on validation) | {tfidf['test_accuracy']:.4f} | {tfidf['test_f1_macro']:.4f} | {points(tfidf['test_accuracy'])} |
| majority class ({maj['label']}) | {maj['test_accuracy']:.4f} | {maj['test_f1_macro']:.4f} | {points(maj['test_accuracy'])} |

## Leakage

{describe_duplicates(d)}.

| duplicates | count |
|---|---|
| test texts also in the training data | {d.get('test_in_train', '?')} |
| of those, dropped from the test split | {d.get('test_dropped', 0)} |
| validation texts also in train | {d.get('validation_in_train', '?')} |
| repeated within a split | {within} |

## Calibration ({c['texts']} test texts)

| metric | value |
|---|---|
| expected calibration error ({c['bins']} equal-width confidence bins) | {c['ece']:.4f} |
| Brier score (mean of Σ over classes of (p − y)², 0 best, 2 worst) | {c['brier']:.4f} |

## Latency and size

Measured with `pipeline("text-classification")` on {hw}, on test texts {_cut(s)}.

| figure | value |
|---|---|
| latency at batch 1, p50 / p95 ({s['batch1_calls']} calls) | {s['batch1_p50_ms']:.1f} ms / {s['batch1_p95_ms']:.1f} ms |
| throughput at batch {BATCH} | {s['batch32_texts_per_s']:.0f} texts/s |
| parameters | {s['parameters']:,} |
| size on disk | {s['weights_mb']:.1f} MB of weights, {s['folder_mb']:.1f} MB with the tokenizer |

## Cost

Resources per trial: {k['resources_per_trial']['cpu']:g} CPU, {k['resources_per_trial']['gpu']:g} GPU. Trial-seconds are each trial's own running
time (start-up, training, evaluation and checkpoints).

| | trial-seconds | CPU-seconds | GPU-seconds |
|---|---|---|---|
| the sweep ({k['trials']} trials) | {k['trial_seconds']:.0f} | {k['cpu_seconds']:.0f} | {k['gpu_seconds']:.0f} |
| every trial run to its planned rounds (estimated) | {k['full_run_trial_seconds']:.0f} | | |
{f"| the promotion retrain ({retrain['device']}; {retrain['share']:.0%} of sweep + retrain) | {retrain['seconds']:.0f} | | {retrain['seconds'] if retrain['device'] == 'cuda' else 0:.0f} |" if retrain else ""}

Early stopping saved {k['early_stopping_saved']:.0%} of the trial-seconds.

| trial | rounds run / planned | seconds | GPU-seconds |
|---|---|---|---|
{per_trial}
"""

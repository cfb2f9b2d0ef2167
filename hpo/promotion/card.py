"""What promotion writes and prints: the model card, the provenance file, the metric tables, the W&B run."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpo.promotion.evidence import card_sections, wandb_summary
from hpo.core.results import CONVERGED, STOPPED, ERRORED, Sweep, TrialRecord
from hpo.core.space import describe
from hpo.core.spec import dump_spec
from hpo.core.versions import git_state, package_versions
from hpo.core.warm import kept_record

PACKAGES = ("hpo-distilbert", "torch", "transformers", "ray", "optuna", "datasets", "wandb", "huggingface_hub", "tokenizers", "pydantic")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class CardExtra:
    """A section some promotion step adds to the card (markdown, with its heading), and its figures in
    ``provenance.json`` under ``key``."""

    key: str
    markdown: str
    record: dict[str, Any] = field(default_factory=dict)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def provenance(sweep: Sweep, trial: TrialRecord, value: float, rnd: int, marker: dict, metrics: dict, extras: Sequence[CardExtra] = ()) -> dict[str, Any]:
    spec = sweep.spec
    return {
        **{e.key: e.record for e in extras},
        "sweep": spec.name,
        "spec": yaml.safe_load(dump_spec(spec)),
        "best_trial": {"trial_id": trial.trial_id, "config": trial.params, "round": rnd, spec.metric: value},
        "training": marker["training"],
        "seeds": {
            "training": marker["training"]["seed"],
            "data": spec.data.seed,
            "searcher": spec.searcher.seed,
            "offline_preset": spec.model.offline_preset.seed if spec.model.offline_preset else None,
        },
        "data": {
            "fingerprint": sweep.data.get("fingerprint"),
            "class_counts": sweep.data.get("class_counts"),
            "promotion_balance": marker["balance"],
        },
        "warm_start": kept_record(sweep.data),  # the earlier sweeps the search started from (None: none)
        "test_metrics": metrics,
        "git_commit": git_state()["commit"],
        "versions": package_versions(PACKAGES),
    }


def example_text(spec: Any, texts: Sequence[str], limit: int = 160) -> str:
    """A text to show the model on its card: the first sanity example of the gate, else the shortest test
    text (cut at a word near ``limit`` characters): the card speaks of the data it was trained on."""
    if spec.promotion.gate.sanity_examples:
        return spec.promotion.gate.sanity_examples[0].text
    text = " ".join(min(texts, key=len).split()) if texts else "a text to classify"
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def truncation_note(training: dict[str, Any], repo_name: str) -> str:
    """How the model read texts longer than its ``max_length`` and how a user reads them the same way (markdown
    for the card's Use section); nothing for the head, which is what a pipeline keeps."""
    from trainables.data import head_share

    length, how = training["max_length"], training.get("truncation", "head")
    room = length - 2  # beside the two special tokens
    if how == "tail":
        return (
            f"\nThe model was trained on the last {room} tokens of longer texts (`truncation: tail`); its tokenizer "
            "truncates on the left, so the pipeline above keeps the same tokens.\n"
        )
    if how != "head_tail":
        return ""
    head = head_share(length)
    return f"""
The model was trained on the first {head} and the last {room - head} tokens of texts longer than {room} tokens
(`truncation: head_tail`); the pipeline above keeps their first {room}. To read a long text as in training:

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{repo_name}")
model = AutoModelForSequenceClassification.from_pretrained("{repo_name}").eval()
ids = tok(text, add_special_tokens=False)["input_ids"]  # text: the text to classify
if len(ids) > {room}:
    ids = ids[:{head}] + ids[len(ids) - {room - head}:]
with torch.no_grad():
    logits = model(torch.tensor([[tok.cls_token_id, *ids, tok.sep_token_id]])).logits
label = model.config.id2label[int(logits.argmax())]
```
"""


def _family_of(model_dir: Path) -> Any:
    from trainables.families import family

    config = json.loads((model_dir / "config.json").read_text())
    return family(config.get("model_type"), str(model_dir))


def model_card(
    sweep: Sweep, trial: TrialRecord, value: float, rnd: int, marker: dict, metrics: dict, repo_name: str, evidence: dict | None = None,
    extras: Sequence[CardExtra] = (), example: str = "a text to classify", family_title: str | None = None,
) -> str:
    spec = sweep.spec
    counts = sweep.counts()
    names = sweep.data.get("label_names") or spec.data.label_names or []
    meta: dict[str, Any] = {
        "license": spec.promotion.license,
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": list(spec.promotion.tags),
        "metrics": ["accuracy", "f1"],
    }
    if spec.model.name and not spec.model.name.startswith("/"):
        meta["base_model"] = spec.model.name
    dataset_name = spec.data.hub_id or "local files"
    if spec.data.hub_id:
        meta["datasets"] = [spec.data.hub_id]
    meta["model-index"] = [
        {
            "name": repo_name,
            "results": [
                {
                    "task": {"type": "text-classification", "name": "Text Classification"},
                    "dataset": {"name": dataset_name, "type": spec.data.hub_id or "local", "split": spec.data.test_split},
                    "metrics": [
                        {"type": "accuracy", "value": round(metrics["test_accuracy"], 4), "name": "Test accuracy"},
                        {"type": "f1", "value": round(metrics["test_f1_macro"], 4), "name": "Test macro-F1", "args": {"average": "macro"}},
                    ],
                }
            ],
        }
    ]
    space = "\n".join(f"| `{k}` | {v} |" for k, v in describe(spec.search_space).items())
    best = "\n".join(f"| `{k}` | {v} |" for k, v in sorted(trial.params.items()))
    balance = marker["balance"]
    data_rows = "\n".join(f"| {split} | " + " | ".join(str(c.get(n, "")) for n in names) + " |" for split, c in (sweep.data.get("class_counts") or {}).items())
    data_rows += f"\n| promotion training set ({balance['strategy']}) | " + " | ".join(str(balance["after"].get(n, "")) for n in names) + " |"
    conf = metrics["test_confusion"]
    conf_rows = "\n".join(f"| **{names[i]}** | " + " | ".join(str(x) for x in row) + " |" for i, row in enumerate(conf))
    per_class = "\n".join(f"| {n} | {metrics[f'test_precision_{n}']:.4f} | {metrics[f'test_recall_{n}']:.4f} |" for n in names)
    base = spec.model.describe() + (f" (a {family_title} model)" if family_title and family_title not in spec.model.describe() else "")
    body = f"""
# {repo_name}

A {len(names)}-class text classifier ({", ".join(names)}) fine-tuned from {base} on {dataset_name},
chosen by a hyperparameter sweep (Ray Tune, Optuna TPE, ASHA) and retrained on the full class-balanced
training set.

## Use

```python
from transformers import pipeline
clf = pipeline("text-classification", model="{repo_name}")
clf({example!r}, truncation=True)
```
{truncation_note(marker['training'], repo_name)}
## Test metrics ({spec.data.test_split} split, {sum(sum(r) for r in conf)} texts)

| metric | value |
|---|---|
| accuracy | {metrics['test_accuracy']:.4f} |
| macro-F1 | {metrics['test_f1_macro']:.4f} |
| loss | {metrics['test_loss']:.4f} |

| class | precision | recall |
|---|---|---|
{per_class}

Confusion matrix (rows: true label, columns: predicted):

| | {" | ".join(names)} |
|---|{"---|" * len(names)}
{conf_rows}
{card_sections(evidence, metrics) if evidence else ""}
{"".join(chr(10) + e.markdown.strip() + chr(10) for e in extras)}
## The sweep

- sweep `{spec.name}`: {len(sweep.trials)} trials run, {counts.get(STOPPED, 0)} stopped early by ASHA, {counts.get(CONVERGED, 0)} ended on patience, {counts.get(ERRORED, 0)} errored
- metric: `{spec.metric}` ({spec.mode}) on a stratified validation split ({spec.data.validation_fraction:.0%} of train)
- winner: trial `{trial.trial_id}`, {spec.metric} = {value:.4f} at evaluation round {rnd}; retrained for {rnd} round(s)
- W&B: project `{spec.tracking.project}`, group `{spec.tracking.group or spec.name}`
{_warm_start_line(kept_record(sweep.data))}
Search space:

| parameter | range |
|---|---|
{space}

Best configuration:

| parameter | value |
|---|---|
{best}

## Data balance

| split | {" | ".join(names)} |
|---|{"---|" * len(names)}
{data_rows}

## Reproduce

```bash
hpo sweep {spec.name}.yaml          # the spec is in provenance.json ("spec")
hpo promote runs/{spec.name} --repo-id {repo_name}
```

`provenance.json` holds the resolved spec, the best configuration, the seeds, the data fingerprint and class
counts, the earlier sweeps the search was warm-started from, the git commit and the package versions.
"""
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body


def _warm_start_line(record: dict[str, Any] | None) -> str:
    """The card's line on the earlier sweeps the search started from (nothing when it started cold)."""
    if not record:
        return ""
    sources = ", ".join(f"`{s['sweep']}` (`{s['path']}`, {s['taken']} trials)" for s in record["sources"])
    return f"- warm-started from earlier sweeps: {sources}; their best {len(record['tried_first'])} configuration(s) ran first\n"


def write_release_files(
    model_dir: Path, sweep: Sweep, trial: TrialRecord, value: float, rnd: int, marker: dict, metrics: dict, repo_name: str,
    evidence: dict | None = None, extras: Sequence[CardExtra] = (), example: str = "a text to classify",
) -> list[str]:
    adapter = _family_of(model_dir)
    (model_dir / "README.md").write_text(model_card(sweep, trial, value, rnd, marker, metrics, repo_name, evidence, extras, example, adapter.title))
    record = provenance(sweep, trial, value, rnd, marker, metrics, extras)
    if evidence:
        record["evidence"] = evidence
    (model_dir / "provenance.json").write_text(json.dumps(record, indent=2, default=str))
    extra = [p.name for p in model_dir.iterdir() if p.is_file() and p.name in ("special_tokens_map.json", *adapter.vocab_files)]
    files = [*MODEL_FILES, *extra, "README.md", "provenance.json"]
    missing = [f for f in files if not (model_dir / f).is_file()]
    if missing:
        from hpo.core.errors import PromotionError

        raise PromotionError(f"{model_dir} lacks {missing}; delete the folder and rerun to retrain")
    return files


def _table(echo: Callable[[str], None], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        echo("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)))


def print_metrics(metrics: dict, sweep: Sweep, echo: Callable[[str], None]) -> None:
    names = sweep.data.get("label_names") or []
    echo(f"test: accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_f1_macro']:.4f}, loss {metrics['test_loss']:.4f}")
    rows = [["class", "precision", "recall", *[f"pred {n}" for n in names]]]
    for i, n in enumerate(names):
        rows.append([n, f"{metrics[f'test_precision_{n}']:.4f}", f"{metrics[f'test_recall_{n}']:.4f}", *map(str, metrics["test_confusion"][i])])
    _table(echo, rows)


def print_gates(gates: list[tuple[str, str, bool]], echo: Callable[[str], None]) -> None:
    if not gates:
        echo("gates: disabled in the spec")
        return
    echo("gates:")
    _table(echo, [["gate", "value", "result"], *[[n, v, "pass" if ok else "FAIL"] for n, v, ok in gates]])


def print_side_by_side(local: dict, published: dict, echo: Callable[[str], None]) -> None:
    echo("local vs published (re-evaluated from the published files):")
    rows = [["metric", "local", "published", ""]]
    for k in sorted(set(local) | set(published)):
        a, b = local.get(k), published.get(k)
        fmt = (lambda x: f"{x:.6f}") if isinstance(a, float) else (lambda x: str(x) if len(str(x)) <= 60 else str(x)[:57] + "...")
        rows.append([k, fmt(a) if a is not None else "-", fmt(b) if b is not None else "-", "same" if a == b else "DIFFERENT"])
    _table(echo, rows)


def log_to_wandb(sweep: Sweep, opts: Any, result: Any, work: Path, config: dict[str, Any], **lineage: Any) -> str | None:
    from hpo.sweep.tracking import log_promotion, resolve_mode

    # The sweep's own mode (recorded when it ran) unless the command line says otherwise: a sweep that ran
    # offline is not logged online just because a key is set now.
    mode = opts.wandb_mode or sweep.data.get("wandb_mode") or resolve_mode(sweep.spec.tracking, None)
    summary = {**scalar_metrics(result.metrics), **wandb_summary(result.evidence), "hub_url": result.url or "", "hub_commit": result.commit or "", "dry_run": opts.dry_run_dir or ""}
    return log_promotion(sweep.spec.tracking, sweep.spec.name, mode, f"{sweep.spec.name}-promotion", config, summary, str(work), opts.wandb_module, **lineage)

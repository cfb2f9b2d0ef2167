"""``hpo init DATA``: a commented sweep spec for a data set, that ``hpo sweep`` runs as it is.

The data is read as a sweep reads it; the text and label columns are found, the classes counted, the texts
measured in tokens by the tokenizer the sweep will use, and the budget sized to this machine. Each value in
the spec carries the reason it was chosen, as a comment, and the spec passes ``hpo sweep --check``'s checks
before it is written. Heavy libraries (datasets, transformers, torch) are imported inside the functions.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpo.core.errors import DataError, ModelError, UsageError
from hpo.core.spec import SweepSpec, load_spec

TEXT_NAMES = ("text", "sentence", "review", "content", "document")  # tried first, in this order
LABEL_NAMES = ("label", "labels", "target", "class", "sentiment")
SPLIT_STEMS = ("train", "test", "validation")  # a folder's files, train.parquet, test.parquet...
MAX_CLASSES = 50  # a column with more distinct values is not a label
IMBALANCED = 1.5  # largest / smallest class past which the sweep is scored by macro F1
TEST_FRACTION = 0.2  # held out as the test split when the data has none
VALIDATION_FRACTION = 0.2
LENGTH_SAMPLE = 1000  # texts measured in tokens
LENGTH_PERCENTILE = 95
LENGTH_STEP = 32
MAX_LENGTH = 512  # training.max_length's bound, and the DistilBERT family's position embeddings
HUB_MODEL = "distilbert-base-uncased"
STORAGE = "runs"
PRESET = {"layers": 2, "dim": 64, "heads": 2, "hidden_dim": 256, "seed": 0}  # the quickstart's
CPU_TRAIN_ROWS = {False: 4000, True: 1000}  # rows a CPU sweep trains on: the preset / a pretrained model


@dataclass(frozen=True)
class InitOptions:
    """What ``hpo init`` is asked: the data, where the spec goes, and the choices a user may make for it."""

    data: str
    output: str | None = None
    force: bool = False
    text_column: str | None = None
    label_column: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Machine:
    cpus: int
    gpus: int

    @classmethod
    def this(cls) -> Machine:
        import torch

        return cls(os.cpu_count() or 1, torch.cuda.device_count())

    def describe(self) -> str:
        return f"{self.cpus} CPU(s) and " + (f"{self.gpus} GPU(s)" if self.gpus else "no GPU")


@dataclass(frozen=True)
class Source:
    """The data as the spec names it: files as the user gave them, or a Hub dataset and its splits."""

    name: str  # the sweep's name, from the data's
    files: dict[str, str] | None = None  # 'train', and 'test' when the data has one
    hub_id: str | None = None
    test_split: str | None = None  # the Hub dataset's split held out as the test split
    test_note: str = ""  # where the test split comes from, in words
    dataset: Any = None  # the Hub dataset, read from the datasets cache

    @property
    def test_fraction(self) -> float | None:
        """The share of train held out as the test split, for data without one."""
        has_test = "test" in self.files if self.files is not None else self.test_split is not None
        return None if has_test else TEST_FRACTION

    def train(self) -> Any:
        """The train split as a ``datasets.Dataset``, read exactly as a sweep reads it."""
        if self.dataset is not None:
            return self.dataset["train"]
        from trainables.data import read_file

        return read_file(self.files["train"], "train")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # string, int, bool, classlabel, or the stored type (float64, list...)
    distinct: int
    mean_chars: float  # strings only
    label_like: bool  # few distinct values of a type a label can have

    def describe(self) -> str:
        chars = f", mean {self.mean_chars:,.0f} characters" if self.kind == "string" else ""
        return f"{self.name!r} ({self.kind}, {self.distinct:,} distinct{chars})"


@dataclass(frozen=True)
class Picked:
    """The text and label columns, and why each was taken."""

    text: Column
    label: Column
    text_why: str
    label_why: str


@dataclass(frozen=True)
class Labels:
    column: Column
    names: list[str]  # in id order, as data.label_names lists them
    counts: dict[str, int]  # rows of each class in the train data
    placeholder: bool  # the names stand for bare ids: the user should rename them
    grouped: bool  # the rows come sorted by label: all of one class, then the next

    @property
    def ratio(self) -> float:
        return max(self.counts.values()) / max(1, min(self.counts.values()))


@dataclass(frozen=True)
class Lengths:
    max_length: int
    percentile: float  # tokens of the LENGTH_PERCENTILE-th percentile text, framing included
    sampled: int
    truncated: float  # share of the sampled texts longer than max_length
    cap: int


@dataclass(frozen=True)
class BaseModel:
    section: dict[str, Any]  # the spec's model: section
    pretrained: bool
    tokenizer: Any
    measured_with: str  # whose tokenizer measured the texts, in words
    note: str  # why this model, in words
    unchecked: str = ""  # why the model cannot be loaded here (then the sweep's model check is left out)


@dataclass(frozen=True)
class Findings:
    """All ``hpo init`` found out, from which the spec is written (``render``)."""

    command: str
    output: str  # the spec's path, as the user will type it
    source: Source
    train_rows: int
    columns: Picked
    labels: Labels
    lengths: Lengths
    model: BaseModel
    machine: Machine


# ------------------------------------------------------------------------------------------- data
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def find_source(data: str) -> Source:
    """A file, a folder of split files, or a Hub dataset id (``UsageError`` when it is none of them)."""
    from trainables.data import DATA_SUFFIXES

    path = Path(data).expanduser()
    if path.is_dir():
        return _folder_source(data, path)
    if path.is_file():
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise UsageError(f"{data}: not a data file hpo reads; give a {', '.join(DATA_SUFFIXES)} file, or a folder of train.* / test.* files")
        stem = path.stem.lower()
        return Source(
            name=_name(Path(os.path.abspath(path)).parent.name if stem in SPLIT_STEMS else path.stem),
            files={"train": data},
            test_note=f"{data} is one file with no test split: data.test_fraction holds {TEST_FRACTION:.0%} of it out",
        )
    if path.suffix.lower() in DATA_SUFFIXES or not _HUB_ID.match(data):
        raise UsageError(f"{data}: no such file or folder")
    return _hub_source(data)


def _folder_source(data: str, folder: Path) -> Source:
    from trainables.data import DATA_SUFFIXES

    found: dict[str, list[str]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and p.stem.lower() in SPLIT_STEMS:
            found.setdefault(p.stem.lower(), []).append(os.path.join(data, p.name))
    several = {split: files for split, files in found.items() if len(files) > 1}
    if "train" not in found or several:
        problem = f"several {', '.join(several)} files ({', '.join(f for files in several.values() for f in files)}): keep one of each" if several else "no train.* file"
        raise UsageError(f"{data}: {problem}; hpo init reads a folder of train.* / test.* / validation.* files ({', '.join(DATA_SUFFIXES)}), or one file")
    files = {"train": found["train"][0]}
    unused = found.get("validation", [])
    if "test" in found:
        files["test"] = found["test"][0]
        note = f"the data's own test split, {files['test']}"
    elif unused:
        files["test"], unused = unused[0], []
        note = f"the data has no test split: its validation split, {files['test']}, is held out as the test split"
    else:
        note = f"the data has no test split: data.test_fraction holds {TEST_FRACTION:.0%} of {files['train']} out"
    if unused:
        note += f"; {unused[0]} is not used (hpo carves its validation split out of train)"
    if Path(files["train"]).suffix.lower() != Path(files.get("test", files["train"])).suffix.lower():
        raise UsageError(f"{data}: {files['train']} and {files['test']} are in different formats; hpo reads both splits in one format: convert one")
    return Source(name=_name(Path(os.path.abspath(folder)).name), files=files, test_note=note)


def _hub_source(hub_id: str) -> Source:
    """A Hub dataset, read from the datasets cache: the Hub itself cannot be reached from every machine."""
    import datasets

    from hpo.sweep.preflight import Unreachable, check_hub

    try:
        check_hub(None, hub_id)  # a Hub that does not answer: a network error naming the id, at once
    except Unreachable as err:
        raise Unreachable(f"{hub_id}: no such file or folder here, and as a Hub dataset it cannot be read: {err}") from None
    datasets.disable_progress_bars()
    try:
        dataset = datasets.load_dataset(hub_id)
    except ConnectionError as err:
        raise DataError(
            f"{hub_id}: no such file or folder here, and the Hub dataset {hub_id!r} cannot be read: the Hugging Face Hub "
            f"cannot be reached ({' '.join(str(err).split())[:200]}) and the datasets cache has no copy of it; give a local "
            "file or folder of the data"
        ) from None
    except Exception as err:
        raise DataError(f"{hub_id}: no such file or folder here, and the Hub dataset {hub_id!r} cannot be read: {type(err).__name__}: {' '.join(str(err).split())[:300]}") from None
    splits = list(dataset)
    if "train" not in splits:
        raise DataError(f"{hub_id}: the dataset has no 'train' split (it has {splits}); hpo init needs one")
    test = next((s for s in ("test", "validation") if s in splits), None)
    note = f"the dataset's {test!r} split" if test else f"the dataset has no test split: data.test_fraction holds {TEST_FRACTION:.0%} of train out"
    return Source(name=_name(hub_id.rsplit("/", 1)[-1]), hub_id=hub_id, test_split=test, test_note=note, dataset=dataset)


def _name(stem: str) -> str:
    """A sweep name from the data's name, not taken by an experiment in STORAGE yet."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).lstrip("-_.")[:90] or "sweep"
    name, n = base, 1
    while (Path(STORAGE) / name / "tuner.pkl").exists():
        n += 1
        name = f"{base}-{n}"
    return name


# ---------------------------------------------------------------------------------------- columns
def profile(dataset: Any) -> list[Column]:
    """Each column's type, distinct values and (for strings) mean length."""
    rows = len(dataset)
    out = []
    for name, feature in dataset.features.items():
        kind = _kind(feature)
        values = [v for v in dataset[name] if v is not None]
        distinct = len(set(values)) if kind in ("string", "int", "bool", "classlabel") else 0
        mean = sum(len(v) for v in values) / max(1, len(values)) if kind == "string" else 0.0
        few = 2 <= distinct <= min(MAX_CLASSES, max(2, rows // 10))
        out.append(Column(name, kind, distinct, mean, few))
    return out


def _kind(feature: Any) -> str:
    if getattr(feature, "names", None):
        return "classlabel"
    dtype = str(getattr(feature, "dtype", type(feature).__name__))
    if dtype in ("string", "large_string"):
        return "string"
    if dtype == "bool":
        return "bool"
    return "int" if dtype.startswith(("int", "uint")) else dtype


def pick_columns(columns: list[Column], text: str | None, label: str | None, where: str) -> Picked:
    """The text and label columns: the ones named, else found (``UsageError`` listing the columns when it
    cannot tell)."""
    by_name = {c.name: c for c in columns}
    listing = "; ".join(c.describe() for c in columns)

    def ask(problem: str) -> UsageError:
        return UsageError(f"{where}: {problem}. Its columns: {listing}. Name the columns to use with --text-column C and --label-column L")

    for flag, given in (("--text-column", text), ("--label-column", label)):
        if given is not None and given not in by_name:
            raise ask(f"{flag} {given!r} is not a column")
    if text is not None and by_name[text].kind != "string":
        raise ask(f"--text-column {text!r} holds {by_name[text].kind}, not texts")
    if label is not None and (by_name[label].kind not in ("string", "int", "bool", "classlabel") or by_name[label].distinct < 2):
        raise ask(f"--label-column {label!r} cannot hold labels ({by_name[label].kind}, {by_name[label].distinct} distinct values)")
    asked = "as asked (--{}-column)"
    text_col, text_why = (by_name[text], asked.format("text")) if text is not None else _pick_text([c for c in columns if c.name != label], ask)
    label_col, label_why = (by_name[label], asked.format("label")) if label is not None else _pick_label([c for c in columns if c.name != text_col.name], ask)
    return Picked(text_col, label_col, text_why, label_why)


def _pick_text(columns: list[Column], ask: Callable[[str], UsageError]) -> tuple[Column, str]:
    texts = [c for c in columns if c.kind == "string" and not c.label_like]
    if not texts:
        raise ask("no column holds texts (strings with many distinct values)")
    named = [c for c in texts if c.name.lower() in TEXT_NAMES]
    if len(named) == 1:
        return named[0], "named as texts usually are"
    pool = sorted(named or texts, key=lambda c: -c.mean_chars)
    if len(pool) > 1 and pool[1].mean_chars >= pool[0].mean_chars / 2:
        both = " and ".join(f"{c.name!r} ({c.mean_chars:,.0f})" for c in pool[:2])
        raise ask(f"cannot tell which column holds the texts: {both} both hold long texts (mean characters)")
    return pool[0], "the longest texts" if len(pool) > 1 else "the one column of texts"


def _pick_label(columns: list[Column], ask: Callable[[str], UsageError]) -> tuple[Column, str]:
    candidates = [c for c in columns if c.label_like]
    named = [c for c in candidates if c.name.lower() in LABEL_NAMES]
    if len(named) == 1:
        return named[0], "named as labels usually are"
    if not named and len(candidates) == 1:
        return candidates[0], f"the one column with few distinct values (at most {MAX_CLASSES})"
    if not candidates:
        raise ask(f"no column looks like labels (2 to {MAX_CLASSES} distinct int, bool or string values)")
    raise ask(f"cannot tell which column holds the labels: {', '.join(repr(c.name) for c in named or candidates)} could each be")


def read_labels(dataset: Any, column: Column, where: str) -> Labels:
    """The classes as a sweep will name them (``trainables.data.label_names_of``), their counts, and
    whether the rows come grouped by label."""
    values = [v for v in dataset[column.name] if v is not None]
    counted = Counter(values)
    placeholder = False
    if column.kind == "classlabel":
        names = list(dataset.features[column.name].names)
        key: Callable[[Any], str] = lambda v: names[v]
    elif column.kind == "bool":
        names, key = ["False", "True"], str
    elif column.kind == "int":
        ids = sorted(counted)
        if ids != list(range(len(ids))):
            raise DataError(
                f"{where}: the label column {column.name!r} holds ids {ids[:10]}; hpo numbers the classes 0..n-1 "
                "(named by data.label_names): renumber them from 0, or store the labels as names (strings)"
            )
        names, key, placeholder = [str(i) for i in ids], str, True
    else:
        names = sorted(str(v) for v in counted)
        key = str
    counts = {name: 0 for name in names}
    for value, n in counted.items():
        counts[key(value)] += n
    changes = sum(a != b for a, b in zip(values, values[1:]))
    return Labels(column, names, counts, placeholder, len(names) > 1 and changes == len(names) - 1)


# ---------------------------------------------------------------------------------------- lengths
def measure(texts: list[Any], tokenizer: Any, seed: int = 0) -> Lengths:
    """``max_length`` from a seeded sample of the texts: their 95th percentile in tokens, rounded up to a
    multiple of 32, capped by the model's longest input."""
    import numpy as np
    from transformers.utils import logging as hf_logging

    idx = np.random.default_rng(seed).permutation(len(texts))[:LENGTH_SAMPLE]
    sample = [texts[i] for i in idx if isinstance(texts[i], str) and texts[i].strip()]
    if not sample:
        raise DataError("the text column holds no text")
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "longer than the maximum sequence length": measuring that is the point
    try:
        ids = tokenizer(sample, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    finally:
        hf_logging.set_verbosity(level)
    # every family frames one text with two special tokens (trainables.data.special_ids), counted in max_length
    lengths = np.array([len(r) for r in ids]) + 2
    cap = min(MAX_LENGTH, int(getattr(tokenizer, "model_max_length", MAX_LENGTH) or MAX_LENGTH))
    percentile = float(np.percentile(lengths, LENGTH_PERCENTILE))
    max_length = min(cap, max(LENGTH_STEP, math.ceil(percentile / LENGTH_STEP) * LENGTH_STEP))
    return Lengths(max_length, percentile, len(sample), float((lengths > max_length).mean()), cap)


# ------------------------------------------------------------------------------------------ model
def choose_model(model: str | None, machine: Machine) -> BaseModel:
    """The base model and the tokenizer the sweep will use: the offline preset on a CPU machine, the Hub's
    distilbert-base-uncased with GPUs, or the one asked for."""
    from trainables.model import base_source, load_tokenizer, offline_tokenizer
    from trainables.settings import ModelSpec, OfflinePreset

    if model is None and not machine.gpus:
        tokenizer = load_tokenizer(base_source(ModelSpec(offline_preset=OfflinePreset(**PRESET))))
        note = (
            "no GPU here: a small DistilBERT with random weights, built offline (the quickstart's), trains in minutes on "
            f"CPU. It shows the sweep working, not a model worth publishing: on a GPU machine hpo init picks {HUB_MODEL}"
        )
        return BaseModel({"offline_preset": PRESET}, False, tokenizer, "the offline preset's tokenizer, distilbert-base-uncased's vocabulary", note)
    name = model or HUB_MODEL
    note = f"{machine.gpus} GPU(s) here: the pretrained {name}, one GPU per trial" if model is None else f"{name}, as asked (--model)"
    if Path(name).expanduser().is_dir() or name.startswith((".", "/", "~")):
        return BaseModel({"name": name}, True, load_tokenizer(str(Path(name).expanduser())), f"{name}'s tokenizer", note)
    from hpo.sweep.preflight import Unreachable, check_hub

    try:
        check_hub(name, None)
        tokenizer = load_tokenizer(name)
    except (Unreachable, ModelError) as err:
        same = " (its own vocabulary)" if name in ("distilbert-base-uncased", "bert-base-uncased") else f" (an estimate for {name})"
        reason = re.split(r"; |\. ", " ".join(str(err).split()), maxsplit=1)[0][:300]  # its first sentence
        unchecked = f"{name} cannot be loaded here ({reason}): the sweep needs the Hub, or the model in the Hugging Face cache"
        return BaseModel({"name": name}, True, offline_tokenizer(), f"the distilbert-base-uncased vocabulary shipped offline{same}", f"{note}. {unchecked}", unchecked)
    return BaseModel({"name": name}, True, tokenizer, f"{name}'s tokenizer", note)


# ------------------------------------------------------------------------------------------- spec
def _flow(value: Any) -> str:
    """A value as one line of YAML."""
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True, sort_keys=False).removesuffix("\n...\n").strip()


def _plan(f: Findings) -> dict[str, Any]:
    """The numbers the spec is made of, by the machine and the model."""
    cpus, gpus, pretrained = f.machine.cpus, f.machine.gpus, f.model.pretrained
    if gpus:
        resources = {"cpu": max(1, min(8, cpus // gpus)), "gpu": 1}
        budget = {"num_trials": max(16, 2 * gpus), "max_concurrent": gpus}
    elif pretrained:  # one fine-tune at a time on every core
        resources, budget = {"cpu": cpus, "gpu": 0}, {"num_trials": 4, "max_concurrent": 1}
    else:
        concurrent = min(4, cpus)
        resources, budget = {"cpu": max(1, cpus // concurrent), "gpu": 0}, {"num_trials": 8, "max_concurrent": concurrent}
    train_rows = f.train_rows * (1 - (f.source.test_fraction or 0))
    cap = CPU_TRAIN_ROWS[pretrained]
    return {"resources": resources, "budget": budget, "train_size": cap if not gpus and train_rows > cap else None}


def render(f: Findings) -> str:
    """The spec, as commented YAML."""
    plan, labels, lengths, src = _plan(f), f.labels, f.lengths, f.source
    imbalanced = labels.ratio > IMBALANCED
    counts = _counts(labels)
    lines = [
        *_wrapped(
            f"Written by `{f.command}`, on a machine with {f.machine.describe()}. Each value says why it was chosen; "
            f"change any of them. `hpo sweep {shlex.quote(f.output)} --check` checks the spec and its data without starting anything.", ""
        ),
        f"name: {_flow(src.name)}",
        "model:",
        *_wrapped(f.model.note, "  "),
        *(f"  {key}: {_flow(value)}" for key, value in f.model.section.items()),
        "data:",
    ]
    if src.files is not None:
        lines += ["  # paths are read from the folder hpo runs in, as they were given to hpo init", "  files:"]
        lines += [f"    {split}: {_flow(path)}" for split, path in src.files.items()]
    else:
        lines += [f"  hub_id: {_flow(src.hub_id)}", "  train_split: train"]
        if src.test_split:
            lines.append(f"  test_split: {_flow(src.test_split)}")
    lines += _wrapped(f"test split: {src.test_note}; promotion scores the winner on it, and trials never see it", "  ")
    if src.test_fraction:
        lines.append(f"  test_fraction: {src.test_fraction}")
    lines += [
        f"  text_column: {_flow(f.columns.text.name)}   # {f.columns.text_why}: mean {f.columns.text.mean_chars:,.0f} characters",
        f"  label_column: {_flow(labels.column.name)}   # {f.columns.label_why}: {labels.column.kind}, {len(labels.names)} classes",
    ]
    if labels.placeholder:
        lines.append("  # the labels are bare ids: these names stand for them, in id order; rename them (e.g. [negative, positive])")
    lines += [
        f"  label_names: {_flow(labels.names)}",
        f"  # classes in {src.files['train'] if src.files else 'the train split'}: {counts} (largest/smallest {labels.ratio:.2f})",
    ]
    if labels.grouped:
        lines += _wrapped(
            "the rows are sorted by label (all of one class, then the next): safe, as every split and sample hpo draws "
            "is stratified per class and shuffled, never the first rows", "  "
        )
    if plan["train_size"]:
        lines.append(f"  train_size: {plan['train_size']}   # a stratified sample: more would take hours per trial on CPU")
    lines += [
        f"  validation_fraction: {VALIDATION_FRACTION}   # of train, stratified: what the trials are scored and compared on",
        "  seed: 13",
        "training:",
        *_wrapped(
            f"{LENGTH_PERCENTILE}% of {lengths.sampled:,} sampled texts are at most {lengths.percentile:,.0f} tokens "
            f"by {f.model.measured_with}; rounded up to a multiple of {LENGTH_STEP}, at most {lengths.cap}: "
            f"{lengths.truncated:.0%} of texts are cut", "  "
        ),
        f"  max_length: {lengths.max_length}",
    ]
    lines += _schedule(f.model.pretrained, bool(f.machine.gpus))
    lines += [
        f"# {f.machine.describe()} here: {plan['budget']['max_concurrent']} trial(s) at a time, "
        + (f"one GPU and {plan['resources']['cpu']} CPU(s) each" if f.machine.gpus else f"{plan['resources']['cpu']} CPU(s) each"),
        f"budget: {_flow(plan['budget'])}",
        f"resources: {_flow(plan['resources'])}",
    ]
    if imbalanced:
        lines.append(f"# the classes are imbalanced ({labels.ratio:.2f}:1, over {IMBALANCED}): macro F1 weighs every class alike, where accuracy would reward the largest")
    else:
        lines.append(f"# the classes are balanced ({labels.ratio:.2f}:1, within {IMBALANCED}): accuracy is a fair score")
    lines += [
        f"metric: {'val_f1_macro' if imbalanced else 'val_accuracy'}",
        "mode: max",
        f"tracking: {_flow({'project': f'hpo-{src.name}', 'mode': 'auto'})}   # W&B: online with WANDB_API_KEY set, else offline",
        f"storage: {STORAGE}",
    ]
    if f.model.pretrained:
        lines.append(f"checkpoints: {_flow({'num_to_keep': 1})}   # a DistilBERT checkpoint (weights + AdamW) is about 800 MB")
    else:
        lines.append(f"checkpoints: {_flow({'num_to_keep': 1, 'disk_budget_mb': 250})}   # finished trials' checkpoints are deleted as they end")
    return "\n".join(lines) + "\n"


def _schedule(pretrained: bool, gpu: bool) -> list[str]:
    """Training, search space, searcher and scheduler: the quickstart's for the random-init preset, the Hub
    DistilBERT spec's for a pretrained model."""
    if not pretrained:
        return [
            "  epochs: 6",
            "  rounds_per_epoch: 2   # evaluate twice per epoch",
            "  batch_size: 32",
            "# a random-init model learns with high learning rates; the search is the quickstart's",
            "search_space:",
            "  learning_rate: {type: loguniform, low: 3.0e-5, high: 3.0e-3}",
            "  batch_size: {type: choice, values: [16, 32]}",
            "  weight_decay: {type: uniform, low: 0.0, high: 0.1}",
            "  warmup_ratio: {type: uniform, low: 0.0, high: 0.1}",
            "searcher: {type: tpe, seed: 0, n_startup_trials: 4, multivariate: true}",
            *_scheduler(max_rounds=12, patience=3),
        ]
    return [
        f"  epochs: {4 if gpu else 2}",
        "  rounds_per_epoch: 2   # evaluate twice per epoch",
        f"  batch_size: {32 if gpu else 16}",
        "  warmup_ratio: 0.1",
        "  eval_batch_size: 128",
        "# fine-tuning a pretrained model: the learning rates that suit it",
        "search_space:",
        "  learning_rate: {type: loguniform, low: 1.0e-5, high: 1.0e-4}",
        *(["  batch_size: {type: choice, values: [16, 32, 64]}", "  dropout: {type: uniform, low: 0.05, high: 0.2}"] if gpu else []),
        "  weight_decay: {type: uniform, low: 0.0, high: 0.1}",
        f"searcher: {{type: tpe, seed: 0, n_startup_trials: {8 if gpu else 2}, multivariate: true}}",
        *_scheduler(max_rounds=8 if gpu else 4, patience=2),
    ]


def _scheduler(max_rounds: int, patience: int) -> list[str]:
    from hpo.core.spec import AshaScheduler

    scheduler = AshaScheduler(max_rounds=max_rounds, grace_period=2, reduction_factor=2, patience=patience)
    rungs = ", ".join(map(str, scheduler.rungs()))
    return [
        f"# rounds are half epochs: ASHA compares the trials at round(s) {rungs} (from one epoch on) and stops the weaker",
        f"# half at each; past round {scheduler.patience_from()}, a trial ends once its metric has not improved for {patience} rounds",
        f"scheduler: {_flow(scheduler.model_dump(include={'type', 'max_rounds', 'grace_period', 'reduction_factor', 'patience'}))}",
    ]


def _wrapped(text: str, indent: str, width: int = 110) -> list[str]:
    """``text`` as comment lines."""
    import textwrap

    return [f"{indent}# {line}" for line in textwrap.wrap(" ".join(text.split()), width - len(indent) - 2, break_on_hyphens=False)]


def _counts(labels: Labels) -> str:
    return ", ".join(f"{name}: {n:,}" for name, n in labels.counts.items())


# ------------------------------------------------------------------------------------------- init
def init_spec(options: InitOptions, echo: Callable[[str], None] = print, machine: Machine | None = None) -> Path:
    """Write a spec for ``options.data`` that ``hpo sweep`` runs as it is, after checking it as a sweep does;
    returns its path. Nothing is written when anything is wrong, and an existing file only with ``force``."""
    source = find_source(options.data)
    output = Path(options.output or f"{source.name}.yaml").expanduser()
    _check_output(output, options.force, source)
    train = source.train()
    where = source.files["train"] if source.files else f"{source.hub_id} (train split)"
    columns = pick_columns(profile(train), options.text_column, options.label_column, where)
    labels = read_labels(train, columns.label, where)
    machine = machine or Machine.this()
    model = choose_model(options.model, machine)
    lengths = measure(list(train[columns.text.name]), model.tokenizer)
    flags = (("-o", options.output), ("--text-column", options.text_column), ("--label-column", options.label_column), ("--model", options.model))
    command = shlex.join(["hpo", "init", options.data, *(part for flag, value in flags if value is not None for part in (flag, value))])
    shown = options.output or str(output)
    findings = Findings(command, shown, source, len(train), columns, labels, lengths, model, machine)
    spec_text = render(findings)
    spec = load_spec(output, text=spec_text)
    _summary(findings, spec, echo)
    echo("checking the spec as `hpo sweep` does before it starts:")
    from hpo.sweep.driver import check_sweep

    check_sweep(spec, echo=lambda line: echo(f"  {line}"), model=not model.unchecked)
    _write(output, spec_text, options.force)
    echo(f"wrote {shown}; run it with: hpo sweep {shlex.quote(shown)}")
    return output


def _check_output(output: Path, force: bool, source: Source) -> None:
    if output.is_dir():
        raise UsageError(f"-o {output}: is a folder; give the spec file to write, e.g. {output / (source.name + '.yaml')}")
    if any(output.resolve() == Path(f).expanduser().resolve() for f in (source.files or {}).values()):
        raise UsageError(f"-o {output}: is a data file of this spec; give another file for the spec")
    if output.exists() and not force:
        raise UsageError(f"{output}: the file exists and hpo init does not replace it; give another -o SPEC, or --force to replace it")


def _write(output: Path, text: str, force: bool) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(output, "w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:  # written by someone else meanwhile
        raise UsageError(f"{output}: the file exists and hpo init does not replace it; give another -o SPEC, or --force to replace it") from None


def _summary(f: Findings, spec: SweepSpec, echo: Callable[[str], None]) -> None:
    labels, lengths = f.labels, f.lengths
    echo(f"{f.command}: {f.train_rows:,} train rows; test split: {f.source.test_note}")
    echo(f"  texts:  {f.columns.text.describe()}, {f.columns.text_why}")
    names = " (placeholder names for bare ids: rename them in the spec)" if labels.placeholder else ""
    echo(f"  labels: {labels.column.describe()}, {f.columns.label_why}: {_counts(labels)}{names}")
    echo(f"  imbalance: {labels.ratio:.2f}:1 (largest/smallest class) -> metric {spec.metric}")
    echo("  order: sorted by label (safe: every split hpo draws is stratified and shuffled)" if labels.grouped else "  order: not sorted by label")
    echo(
        f"  max_length: {lengths.max_length} ({LENGTH_PERCENTILE}th percentile of {lengths.sampled:,} sampled texts: "
        f"{lengths.percentile:,.0f} tokens by {f.model.measured_with}; {lengths.truncated:.0%} cut)"
    )
    echo(f"  machine: {f.machine.describe()} -> {spec.model.describe()}, {spec.budget.num_trials} trials, {spec.budget.max_concurrent} at a time")
    if f.model.unchecked:
        echo(f"  not checked: the base model: {f.model.unchecked}")

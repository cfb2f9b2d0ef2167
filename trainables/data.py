"""Labelled texts: loading (Hub or local files, one code path), label names, stratified seeded
splits, balance checks, and tokenizing once into compact arrays that every trial shares.

Both the Hub's IMDB and the offline sample are sorted by label, so nothing here ever takes the
first N rows: every subset is drawn per class with a seeded generator.
"""

from __future__ import annotations

import hashlib
import html
import math
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from trainables.errors import DataError, ModelError, shown
from trainables.settings import TRUNCATIONS, DataSpec

_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".tsv": "csv"}


@dataclass(frozen=True)
class Labelled:
    """Texts with integer labels 0..n-1 whose names are ``label_names[i]``."""

    texts: list[str]
    labels: np.ndarray  # int64

    def subset(self, idx: np.ndarray) -> Labelled:
        return Labelled([self.texts[i] for i in idx], self.labels[idx])

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Splits:
    """train / validation (carved from train) / test, plus what a user needs to audit them."""

    train: Labelled
    validation: Labelled
    test: Labelled
    label_names: list[str]
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    fingerprint: str = ""
    warnings: list[str] = field(default_factory=list)  # what the user should know (imbalance), not refusals
    duplicates: dict[str, Any] = field(default_factory=dict)  # ``find_duplicates``, counted before any drop

    def full_train(self) -> Labelled:
        """All of train: the trial training split with the validation split folded back in."""
        return Labelled(self.train.texts + self.validation.texts, np.concatenate([self.train.labels, self.validation.labels]))


# ---------------------------------------------------------------------------------------- loading
# How a data file's path becomes a file on this machine. By default only local paths are read; the
# service passes one that also fetches files from object storage (``hpo.core.storage.fetch``).
Fetch = Callable[[str], str]


def local_file(path: str) -> str:
    """The default ``Fetch``: a path on this machine, as it is (FileNotFoundError when there is none)."""
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    return path


def _load_raw(spec: DataSpec, fetch: Fetch) -> dict[str, Any]:
    """Return {'train': Dataset, 'test': Dataset} through ``datasets.load_dataset`` either way ('test' only
    when the data has a test split: with ``test_fraction`` it is drawn from train later)."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if spec.files is not None:
            suffixes = {Path(urlsplit(f).path).suffix.lower() for f in spec.files.values()}
            if len(suffixes) != 1 or next(iter(suffixes)) not in _BUILDERS:
                raise DataError(
                    f"data.files: use one format for both files, one of {sorted(_BUILDERS)}; got {sorted(suffixes)}"
                )
            local = {split: _fetched(split, path, fetch) for split, path in spec.files.items()}
            if "test" in local:
                _check_distinct(spec.files, local)
            # One load per file: the splits may differ in extra columns, and each error names its file.
            return {split: _read_local(split, spec.files[split], local[split]) for split in spec.files}
        splits = {"train": spec.train_split} if spec.test_fraction is not None else {"train": spec.train_split, "test": spec.test_split}
        return {split: datasets.load_dataset(spec.hub_id, split=name) for split, name in splits.items()}
    except DataError:
        raise
    except Exception as err:  # datasets raises many types; the user needs the cause, not the class
        raise DataError(f"cannot read the data from {spec.hub_id}: {_root_cause(err)}") from err


DATA_SUFFIXES = tuple(sorted(_BUILDERS))  # the data file formats a sweep reads


def read_file(path: str, split: str = "train", fetch: Fetch = local_file) -> Any:
    """One data file (parquet, csv, tsv, json, jsonl) as a ``datasets.Dataset``, read exactly as a sweep
    reads it; ``DataError`` naming ``data.files.SPLIT`` and the file when it cannot be used."""
    return _read_local(split, path, _fetched(split, path, fetch))


def _read_local(split: str, path: str, local: str) -> Any:
    suffix = Path(urlsplit(path).path).suffix.lower()
    if suffix not in _BUILDERS:
        raise DataError(f"data.files.{split}: {path} is not a data file hpo reads; use one of {', '.join(DATA_SUFFIXES)}")
    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    return _load_file(_BUILDERS[suffix], split, path, local, kwargs)


def _fetched(split: str, path: str, fetch: Fetch) -> str:
    try:
        return fetch(path)
    except FileNotFoundError:
        raise DataError(f"data.files.{split}: no such file {path}") from None


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _check_distinct(files: dict[str, str], local: dict[str, str]) -> None:
    """The test file must not be the train file: a model scored on what it trained on measures its memory."""
    train, test = local["train"], local["test"]
    if os.path.samefile(train, test):
        what = "the train file" + ("" if files["train"] == files["test"] else f" {files['train']} under another name")
    elif os.path.getsize(train) == os.path.getsize(test) and _digest(train) == _digest(test):
        what = f"a byte-for-byte copy of the train file {files['train']}"
    else:
        return
    raise DataError(f"data.files.test: {files['test']} is {what}; a model scored on its own training texts measures memory, not skill: give a held-out test file")


def _load_file(builder: str, split: str, path: str, local: str, kwargs: dict[str, Any]) -> Any:
    import datasets

    datasets.disable_progress_bars()
    empty = DataError(f"data.files.{split}: {path} has 0 rows")
    if Path(local).stat().st_size == 0:
        raise empty
    try:
        if builder != "parquet":
            _check_utf8(local)
        if builder == "parquet":
            import pyarrow.parquet

            if pyarrow.parquet.ParquetFile(local).metadata.num_rows == 0:
                raise empty  # datasets fails on it with an error about batch sizes
        ds = datasets.load_dataset(builder, data_files=local, split="train", **kwargs)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"data.files.{split}: cannot read the data from {path}: {_root_cause(err)}") from err
    if len(ds) == 0:
        raise empty
    return ds


def _check_utf8(path: str, chunk: int = 1 << 20) -> None:
    """Text files must be UTF-8; the readers only say "invalid UTF8" without where."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                raise UnicodeDecodeError("utf-8", block, err.start, err.end, f"at byte {offset + err.start}") from None
            offset += len(block)
        decoder.decode(b"", final=True)


def _root_cause(err: BaseException) -> str:
    """The innermost exception of a chain (datasets wraps the reader's error in its own), in one line."""
    seen = err
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        seen = seen.__cause__ or seen.__context__
    if isinstance(seen, UnicodeDecodeError):
        where = seen.reason if seen.reason.startswith("at byte") else f"at byte {seen.start}"
        return f"not {seen.encoding} text (UnicodeDecodeError {where}); save the file as UTF-8"
    text = " ".join(str(seen).split())
    return f"{type(seen).__name__}: {text[:300]}"


def label_names_of(feature: Any, values: list[Any], spec: DataSpec) -> tuple[list[str], dict[Any, int]]:
    """Decide the label names and how raw label values map to ids.

    * ``ClassLabel`` feature: names come from the data; ``label_names`` in the spec must equal them
      (a reversed list is the classic way to read ids backwards, so it is refused, not trusted).
    * plain ints: ``label_names`` is required and id ``i`` is named ``label_names[i]``.
    * strings: ids follow ``label_names`` when given, else the sorted distinct strings.
    * true/false: false is id 0 and true id 1, named by ``label_names`` or 'False' and 'True'.
    """
    names = getattr(feature, "names", None)
    distinct = sorted(set(values))
    if distinct and all(isinstance(v, (bool, np.bool_)) for v in distinct):
        return _bool_names(spec), {False: 0, True: 1}
    if names:
        if spec.label_names is not None and list(spec.label_names) != list(names):
            raise DataError(
                f"data.label_names {shown(spec.label_names)} disagree with the dataset's own label names {shown(list(names))} "
                f"(id 0 = {shown(names[0])}); remove data.label_names or list the dataset's names in id order"
            )
        return list(names), {i: i for i in range(len(names))}
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in distinct):
        if spec.label_names is None:
            raise DataError(
                f"data.label_names: the label column {shown(spec.label_column)} holds bare ids {shown(distinct)}; "
                "name them in id order, e.g. label_names: [negative, positive]"
            )
        bad = [v for v in distinct if not 0 <= v < len(spec.label_names)]
        if bad:
            raise DataError(f"label ids {shown(bad)} are outside 0..{len(spec.label_names) - 1} (data.label_names has {len(spec.label_names)} names)")
        return list(spec.label_names), {i: i for i in range(len(spec.label_names))}
    strings = [str(v) for v in distinct]
    order = list(spec.label_names) if spec.label_names is not None else strings
    unknown = [s for s in strings if s not in order]
    if unknown:
        raise DataError(f"{len(unknown)} label(s) {shown(unknown)} are not in data.label_names {shown(order)}")
    return order, {name: i for i, name in enumerate(order)}


def _bool_names(spec: DataSpec) -> list[str]:
    """A true/false label column: false is id 0, true id 1, named 'False' and 'True' unless label_names says."""
    names = list(spec.label_names) if spec.label_names is not None else ["False", "True"]
    if len(names) != 2:
        raise DataError(
            f"data.label_names: the label column {spec.label_column!r} holds true/false, two classes; give two names "
            f"(false first), got {names}"
        )
    return names


def _to_labelled(ds: Any, spec: DataSpec, split: str, names_and_map=None) -> tuple[Labelled, list[str], dict]:
    missing = [c for c in (spec.text_column, spec.label_column) if c not in ds.column_names]
    if missing:
        raise DataError(f"{split} split: missing column(s) {shown(missing)}; it has {shown(ds.column_names)} (set data.text_column / data.label_column)")
    texts = ds[spec.text_column]
    raw = list(ds[spec.label_column])
    unlabelled = [i for i, v in enumerate(raw) if v is None or (isinstance(v, float) and math.isnan(v))]
    if unlabelled:
        raise DataError(
            f"{split} split, column {spec.label_column!r}: {len(unlabelled)} row(s) have no label (empty or NaN), "
            f"first at row {unlabelled[0]}; drop those rows or label them"
        )
    _check_label_kinds(raw, spec.label_column, split)
    if names_and_map is None:
        names_and_map = label_names_of(ds.features[spec.label_column], raw, spec)
    names, mapping = names_and_map
    labels = np.empty(len(raw), dtype=np.int64)
    for row, v in enumerate(raw):
        if v not in mapping:
            where = "data.label_names" if spec.label_names is not None else "the labels of the train split"
            raise DataError(
                f"{split} split, column {spec.label_column!r}, row {row}: label {shown(v)} is not one of {shown(names)} ({where}); "
                "fix the row, or list the label in data.label_names"
            )
        labels[row] = mapping[v]
    blank = [i for i, t in enumerate(texts) if not has_content(t)]
    if blank:
        raise DataError(
            f"{split} split, column {spec.text_column!r}: {len(blank)} text(s) with nothing to learn from (empty or missing text, "
            f"or only markup, whitespace or invisible characters), first at row {blank[0]}: {shown(texts[blank[0]])}; drop or fix those rows"
        )
    return Labelled(list(texts), labels), names, mapping


def _check_label_kinds(values: list[Any], column: str, split: str) -> None:
    """Labels are class ids (whole numbers) or names (strings), one kind in a column: a hand-made file that mixes
    ``1`` and ``"positive"`` would otherwise get a class named "1"."""
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return  # a true/false column: false is id 0, true id 1
    ids, names = None, None
    for row, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, int, float, np.integer, np.floating)):
            raise DataError(
                f"{split} split, column {column!r}, row {row}: label {shown(v)} is a {type(v).__name__}; a label is a class id "
                "(0, 1, ...), a class name, or true/false in the whole column"
            )
        if isinstance(v, str) and not v.strip().lstrip("-").isdigit():
            names = v if names is None else names
        else:
            ids = v if ids is None else ids
    if ids is not None and names is not None:
        raise DataError(
            f"{split} split, column {column!r}: mixes label ids and names ({shown(ids)} and {shown(names)}); use one kind in the "
            "whole column: ids 0..n-1 named by data.label_names, or the names themselves"
        )


_WORD = re.compile(r"\w")


def has_content(text: Any) -> bool:
    """Whether a text holds something to learn from: a letter, digit, punctuation mark or symbol once markup is
    removed and entities decoded (not only whitespace, zero-width or other invisible characters)."""
    if not isinstance(text, str):
        return False
    visible = html.unescape(_MARKUP.sub(" ", text))
    return _WORD.search(visible) is not None or any(unicodedata.category(c)[0] in "LNPS" for c in visible)


# ------------------------------------------------------------------------------------- sampling
def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row ids into (rest, picked) with ``fraction`` of every class picked, seeded and shuffled."""
    rng = np.random.default_rng(seed)
    picked, rest = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(idx)))
        picked.append(idx[:k])
        rest.append(idx[k:])
    return rng.permutation(np.concatenate(rest)), rng.permutation(np.concatenate(picked))


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` row ids drawn with every class in its original proportion (never the first n rows)."""
    if n >= len(labels):
        return np.random.default_rng(seed).permutation(len(labels))
    return stratified_indices(labels, n / len(labels), seed)[1]


def class_counts(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(names))
    return {name: int(c) for name, c in zip(names, counts)}


MIN_EVAL_EXAMPLES = 5  # fewer examples of a class in validation or test, and its recall is noise
IMBALANCE_WARNING = 3.0  # largest / smallest class past which the user is told


def check_balance(split: str, counts: dict[str, int], max_ratio: float | None) -> str | None:
    """Refuse what is really wrong with a split; return a warning when its classes are imbalanced.

    Refused: a class with no example, a validation or test split with too few examples of a class to
    measure its recall, and (only when the spec sets ``data.max_class_ratio``) skew past that limit."""
    empty = [n for n, c in counts.items() if c == 0]
    if empty:
        raise DataError(
            f"{split} split has no example of class(es) {empty}: {counts}; every class needs examples in train, "
            "validation and test: add some, or remove the class from data.label_names"
        )
    ratio = max(counts.values()) / min(counts.values())
    if max_ratio is not None and ratio > max_ratio:
        raise DataError(
            f"{split} split is skewed {ratio:.2f}:1 (largest/smallest class) past data.max_class_ratio "
            f"= {max_ratio}: {counts}; raise the limit or rebalance the data"
        )
    few = [n for n, c in counts.items() if c < MIN_EVAL_EXAMPLES]
    if split != "train" and few:
        raise DataError(
            f"{split} split has fewer than {MIN_EVAL_EXAMPLES} examples of class(es) {few}: {counts}; their recall "
            "cannot be measured: use more data (data.train_size, data.test_size, data.validation_fraction) or merge rare classes"
        )
    if ratio > IMBALANCE_WARNING:
        return (
            f"the {split} split is imbalanced {ratio:.1f}:1 ({counts}); consider metric: val_f1_macro and "
            "promotion.balance: class_weight (or downsample)"
        )
    return None


def check_shares(split: str, counts: dict[str, int], source: dict[str, int]) -> None:
    """A sample's class shares must match its source file's within sampling noise (3 sigma): sampling
    the first N rows of a sorted file is the failure this guards against."""
    n, total = sum(counts.values()), sum(source.values())
    for name, c in counts.items():
        p = source[name] / total
        if abs(c / n - p) > 3 * math.sqrt(p * (1 - p) / n) + 1 / n:
            raise DataError(
                f"{split} split: class {name!r} is {c / n:.1%} of it but {p:.1%} of its source file ({counts} vs {source}); "
                "the sample is not representative"
            )


# ------------------------------------------------------------------------------------- leakage
_MARKUP = re.compile(r"<[^<>]{0,200}>")  # tags such as IMDB's <br />


def normalise(text: str) -> str:
    """The form two texts are compared in: markup removed, entities decoded, case folded, whitespace
    collapsed. Two reviews that differ only in these are the same review."""
    return " ".join(html.unescape(_MARKUP.sub(" ", text)).casefold().split())


def _keys(part: Labelled) -> list[bytes]:
    return [hashlib.blake2b(normalise(t).encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in part.texts]


def _repeats(keys: list[bytes]) -> int:
    """Rows that repeat an earlier row of the same list."""
    return len(keys) - len(set(keys))


def find_duplicates(train: Labelled, validation: Labelled, test: Labelled) -> tuple[dict[str, Any], np.ndarray]:
    """Exact duplicates after ``normalise``: within each split, validation rows also in train, and test rows
    also in train or validation (what the promoted model is trained on). Returns the counts and the test
    rows that also appear in training."""
    tr, va, te = _keys(train), _keys(validation), _keys(test)
    trained = set(tr) | set(va)
    in_train = np.array([k in trained for k in te], dtype=bool)
    seen = set(tr)
    counts = {
        "within": {"train": _repeats(tr), "validation": _repeats(va), "test": _repeats(te)},
        "validation_in_train": sum(k in seen for k in va),
        "test_in_train": int(in_train.sum()),
    }
    return counts, np.flatnonzero(in_train)


def describe_duplicates(d: dict[str, Any]) -> str:
    """One line for the console and the card."""
    if not d:
        return "duplicates: not counted"
    within = ", ".join(f"{split} {n}" for split, n in d["within"].items())
    test = f"{d['test_in_train']} test text(s) also in the training data"
    if d.get("test_dropped"):
        test += f", dropped from the test split ({d['test_before_drop']} -> {d['test_before_drop'] - d['test_dropped']} texts)"
    elif d["test_in_train"]:
        test += ", kept (data.drop_test_duplicates: false): the test score flatters the model"
    return f"duplicates (after normalising case, whitespace and markup): {test}; {d['validation_in_train']} validation text(s) also in train; repeated within {within}"


def fingerprint(*parts: Labelled) -> str:
    h = hashlib.sha256()
    for part in parts:
        for t, y in zip(part.texts, part.labels.tolist()):
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\x00%d\x00" % y)
        h.update(b"\x01")
    return h.hexdigest()


def load_splits(spec: DataSpec, fetch: Fetch = local_file) -> Splits:
    """Load, name labels, sample, carve validation from train, check balance. Raises ``DataError``.
    ``fetch`` turns each data file's path into a file on this machine."""
    raw = _load_raw(spec, fetch)
    train, names, mapping = _to_labelled(raw["train"], spec, "train")
    if "test" in raw:
        test, _, _ = _to_labelled(raw["test"], spec, "test", (names, mapping))
    else:  # data.test_fraction: the test split is held out of train before anything else is drawn from it
        rest, held = stratified_indices(train.labels, spec.test_fraction, spec.seed + 2)
        train, test = train.subset(rest), train.subset(held)
    if len(names) < 2:
        raise DataError(f"need at least two classes, the data has {names}")
    sources = {"train": class_counts(train.labels, names), "validation": class_counts(train.labels, names), "test": class_counts(test.labels, names)}
    if spec.train_size is not None:
        train = train.subset(stratified_sample(train.labels, spec.train_size, spec.seed))
    if spec.test_size is not None:
        test = test.subset(stratified_sample(test.labels, spec.test_size, spec.seed + 1))
    rest, val = stratified_indices(train.labels, spec.validation_fraction, spec.seed)
    train, validation = train.subset(rest), train.subset(val)
    duplicates, leaked = find_duplicates(train, validation, test)
    duplicates.update(test_before_drop=len(test), test_dropped=0)
    if spec.drop_test_duplicates and len(leaked):  # a test text the model trained on measures memory, not skill
        test = test.subset(np.setdiff1d(np.arange(len(test)), leaked))
        duplicates["test_dropped"] = len(leaked)
    counts, warnings = {}, []
    for split, part in (("train", train), ("validation", validation), ("test", test)):
        counts[split] = class_counts(part.labels, names)
        try:
            warning = check_balance(split, counts[split], spec.max_class_ratio)
        except DataError as err:
            if split == "test" and duplicates["test_dropped"]:
                raise DataError(
                    f"{err} (after dropping {duplicates['test_dropped']} of {duplicates['test_before_drop']} test texts that also "
                    "appear in train: is the test file a copy of the train file? give a distinct test set, or set "
                    "data.drop_test_duplicates: false)"
                ) from None
            raise
        if warning and split == "train":  # the data's own imbalance: said once
            warnings.append(warning)
        if min(sources[split].values()) > 0:
            check_shares(split, counts[split], sources[split])
    return Splits(train, validation, test, names, counts, fingerprint(train, validation, test), warnings, duplicates)


# ------------------------------------------------------------------------------------- balancing
def balance(labels: np.ndarray, names: list[str], strategy: str, seed: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Row ids to train on and optional class weights for the loss, plus a report of what changed: how
    promotion balances the classes of the set it retrains on (``promotion.balance``)."""
    counts = np.bincount(labels, minlength=len(names))
    report: dict[str, Any] = {"strategy": strategy, "before": dict(zip(names, counts.tolist()))}
    weights = None
    if strategy == "downsample":
        rng = np.random.default_rng(seed)
        keep = counts.min()
        idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:keep] for c in range(len(names))])
        idx = rng.permutation(idx)
    else:
        idx = np.arange(len(labels))
        if strategy == "class_weight":
            w = len(labels) / (len(names) * counts)
            weights = w.astype(np.float32)
            report["class_weights"] = dict(zip(names, [round(float(x), 4) for x in w]))
    report["after"] = dict(zip(names, np.bincount(labels[idx], minlength=len(names)).tolist()))
    report["dropped"] = int(len(labels) - len(idx))
    return idx, weights, report


# ----------------------------------------------------------------------------------- tokenized form
def head_share(max_length: int) -> int:
    """Tokens ``head_tail`` keeps from the start of a long text: a quarter of ``max_length``; the tail gets
    the rest but the two special tokens (128 + 382 at 512, the split of Sun et al. 2019)."""
    return max_length // 4


def keep(row: np.ndarray, max_length: int, truncation: str) -> np.ndarray:
    """The tokens of one text (``row``, no special tokens) a model reading ``max_length`` tokens sees, under
    ``truncation``: all of them when they fit beside the two special tokens, else the first ones (head), the
    last ones (tail), or ``head_share(max_length)`` first ones and the last ones for the rest (head_tail)."""
    room = max_length - 2
    if len(row) <= room or truncation == "head":
        return row[:room]
    if truncation == "tail":
        return row[len(row) - room :]
    head = head_share(max_length)
    return np.concatenate([row[:head], row[len(row) - (room - head) :]])


def stored_ends(truncations: tuple[str, ...] | frozenset[str] | set[str]) -> str:
    """What tokenizing keeps of a text longer than the room for it, so that every one of ``truncations`` can
    be cut from the stored row: only its head (the head alone is asked for), only its tail, or both ends."""
    wanted = set(truncations)
    if wanted <= {"head"}:
        return "head"
    if wanted == {"tail"}:
        return "tail"
    return "both"


@dataclass(frozen=True)
class Tokenized:
    """Ragged token ids without special tokens, stored flat (cheap to ship through Ray's object store).

    Row ``i`` is ``ids[offsets[i]:offsets[i+1]]``; ``[CLS]``/``[SEP]`` are added when batching so one
    tokenization serves every ``max_length`` a trial may pick. Of a text longer than the sweep's largest
    ``max_length`` (the bound, less two special tokens: ``room``) a row holds what ``truncations`` need
    (``stored_ends``): its first ``room`` tokens (head), its last ``room`` (tail), or for both ends the whole
    text when it has at most ``2 * room`` tokens, else its first ``room`` and its last ``room``. Either way
    the first and last k <= room tokens of a row are the text's, so ``keep`` cuts every strategy from it.
    """

    ids: np.ndarray  # int32, flat
    offsets: np.ndarray  # int64, len n+1
    labels: np.ndarray  # int64
    truncations: tuple[str, ...] = ("head",)  # the strategies its rows can serve

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self, max_length: int) -> np.ndarray:
        """Length of each row with special tokens, after truncation to ``max_length``: the same under every
        strategy (each keeps ``max_length - 2`` tokens of a longer text)."""
        return np.minimum(np.diff(self.offsets), max_length - 2) + 2

    def row(self, i: int, max_length: int, truncation: str = "head") -> np.ndarray:
        """Row ``i`` as a model reading ``max_length`` tokens sees it under ``truncation``, without special tokens."""
        return keep(self.ids[self.offsets[i] : self.offsets[i + 1]], max_length, truncation)

    def check(self, truncation: str) -> None:
        """Refuse a strategy these rows were not tokenized for (their ends would be the wrong ones)."""
        if truncation not in self.truncations:
            raise ValueError(
                f"the texts were tokenized for truncation {' and '.join(self.truncations)}, not {truncation}: "
                "tokenize them with every strategy the sweep may use"
            )

    def select(self, idx: np.ndarray) -> Tokenized:
        rows = [self.ids[self.offsets[i] : self.offsets[i + 1]] for i in idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(r) for r in rows])
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)
        return Tokenized(flat.astype(np.int32), offsets, self.labels[idx], self.truncations)

    @staticmethod
    def concat(parts: list[Tokenized]) -> Tokenized:
        offsets = [np.zeros(1, dtype=np.int64)]
        base = 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        served = tuple(t for t in parts[0].truncations if all(t in p.truncations for p in parts))
        return Tokenized(np.concatenate([p.ids for p in parts]), np.concatenate(offsets), np.concatenate([p.labels for p in parts]), served)


@dataclass(frozen=True)
class SpecialIds:
    """The family's framing of a text, from its tokenizer: ``cls`` before, ``sep`` after, ``pad`` to fill."""

    cls: int
    sep: int
    pad: int


def tokenize(tokenizer: Any, part: Labelled, max_length: int, truncations: tuple[str, ...] = ("head",), batch: int = 1000) -> Tokenized:
    """Tokenize once to the longest ``max_length`` of the sweep (minus room for [CLS]/[SEP]), keeping of a
    longer text what every strategy in ``truncations`` needs (``Tokenized``): for the head alone, exactly the
    head, as the tokenizer truncates it."""
    room = max_length - 2
    ends = stored_ends(truncations)
    # the tokenizer cuts the head itself, unless it was saved to cut the tail (a promoted tail model's)
    cuts_head = ends == "head" and getattr(tokenizer, "truncation_side", "right") == "right"
    rows: list[list[int]] = []
    for start in range(0, len(part), batch):
        enc = tokenizer(
            part.texts[start : start + batch],
            add_special_tokens=False,
            truncation=cuts_head,
            max_length=room if cuts_head else None,
            return_attention_mask=False,
            return_token_type_ids=False,
            **({} if cuts_head else {"verbose": False}),  # whole texts, longer than the model reads: no warning
        )
        rows.extend(enc["input_ids"] if cuts_head else (_ends(r, room, ends) for r in enc["input_ids"]))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    flat = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(offsets[-1]))
    return Tokenized(flat, offsets, part.labels.copy(), tuple(t for t in TRUNCATIONS if t in truncations))


def _ends(row: list[int], room: int, ends: str) -> list[int]:
    """What ``Tokenized`` stores of a whole text's ids for ``ends`` (``stored_ends``)."""
    if ends == "head":
        return row[:room]
    if ends == "tail":
        return row[max(0, len(row) - room) :]
    return row if len(row) <= 2 * room else row[:room] + row[len(row) - room :]


def special_ids(tokenizer: Any) -> SpecialIds:
    """The tokens the tokenizer frames one text with, read from its own template ([CLS] ... [SEP] for
    BERT, <s> ... </s> for RoBERTa), and its padding token."""
    plain = list(tokenizer("hello world", add_special_tokens=False)["input_ids"])
    framed = list(tokenizer("hello world")["input_ids"])
    if len(framed) != len(plain) + 2 or framed[1:-1] != plain or tokenizer.pad_token_id is None:
        raise ModelError(
            f"the tokenizer ({type(tokenizer).__name__}) frames a text as {framed} around {plain} (padding token "
            f"{tokenizer.pad_token_id}): only one special token before and one after a text, and a padding token, are supported"
        )
    return SpecialIds(cls=framed[0], sep=framed[-1], pad=tokenizer.pad_token_id)


@dataclass(frozen=True)
class SweepData:
    """What the driver prepares once and every trial (and promotion) reads: no re-tokenizing."""

    train: Tokenized
    validation: Tokenized
    test: Tokenized
    special: SpecialIds
    label_names: list[str]
    max_length: int

    @property
    def truncations(self) -> tuple[str, ...]:
        """The truncation strategies the texts were tokenized for (with ``max_length``, what they hold)."""
        return self.train.truncations

    def check(self, max_length: int, truncation: str) -> None:
        """Refuse a trial's length or strategy the texts were not tokenized for: its texts would be cut short
        or at the wrong end."""
        if max_length > self.max_length:
            raise ValueError(f"the texts were tokenized to max_length {self.max_length}, not {max_length}: tokenize them to the sweep's largest")
        for part in (self.train, self.validation, self.test):
            part.check(truncation)

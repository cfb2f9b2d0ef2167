"""Data and base model, prepared once per sweep (and once per promotion); a sweep starts Ray meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hpo.core.spec import SweepSpec
from hpo.core.storage import fetch
from trainables.data import SpecialIds, Splits, SweepData, describe_duplicates, load_splits, special_ids, tokenize
from trainables.model import base_source, load_tokenizer, model_family


@dataclass(frozen=True)
class Prepared:
    """What every trial shares through the object store, and what promotion retrains from."""

    data: SweepData
    source: str  # the base model: Hub id or folder
    splits: Splits
    tokenizer: Any

    @property
    def summary(self) -> dict[str, Any]:
        return {
            "label_names": self.splits.label_names,
            "class_counts": self.splits.class_counts,
            "fingerprint": self.splits.fingerprint,
            "duplicates": self.splits.duplicates,
        }


def prepare(spec: SweepSpec, echo: Callable[[str], None] = print, alongside: Callable[[], None] | None = None) -> Prepared:
    """Load and check the data, resolve the base model, tokenize once. Raises on bad data before any launch.

    ``alongside`` (the driver starts Ray with it) runs in the calling thread once the data has passed
    its checks, while the tokenizer loads and the texts are tokenized in another thread: the fast
    tokenizer and Ray's start-up (mostly waiting on its own processes) overlap instead of adding up.
    """
    splits = load_data(spec, echo)
    if alongside is None:
        return _tokenized(spec, splits, echo)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpo-tokenize") as pool:
        future = pool.submit(_tokenized, spec, splits, echo)
        alongside()
        return future.result()


def load_data(spec: SweepSpec, echo: Callable[[str], None] = print) -> Splits:
    """The data's splits, checked (``DataError`` on what a sweep cannot use); their classes, warnings and
    duplicate counts are echoed."""
    splits = load_splits(spec.data, fetch)
    for split, counts in splits.class_counts.items():
        echo(f"{split:>10}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    for warning in splits.warnings:
        echo(f"warning: {warning}")
    echo(describe_duplicates(splits.duplicates))
    return splits


def load_base_model(spec: SweepSpec) -> tuple[str, Any, SpecialIds]:
    """The base model (Hub id or folder), its tokenizer and how that frames a text. ``ModelError`` for a
    model that cannot be loaded, a family without an adapter or another framing, before any trial starts."""
    source = base_source(spec.model)
    model_family(source)
    tokenizer = load_tokenizer(source)
    return source, tokenizer, special_ids(tokenizer)


def _tokenized(spec: SweepSpec, splits: Splits, echo: Callable[[str], None]) -> Prepared:
    source, tokenizer, special = load_base_model(spec)
    max_length, truncations = spec.max_length_bound(), spec.truncations()
    start = time.perf_counter()
    data = SweepData(
        train=tokenize(tokenizer, splits.train, max_length, truncations),
        validation=tokenize(tokenizer, splits.validation, max_length, truncations),
        test=tokenize(tokenizer, splits.test, max_length, truncations),
        special=special,
        label_names=splits.label_names,
        max_length=max_length,
    )
    cut = "" if truncations == ("head",) else f", truncation {' / '.join(truncations)}"
    echo(f"tokenized {len(data.train) + len(data.validation) + len(data.test)} texts once in {time.perf_counter() - start:.1f}s (max_length {max_length}{cut})")
    return Prepared(data, source, splits, tokenizer)

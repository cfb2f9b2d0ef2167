"""A running sweep's view of a trial's files, from Tune's trial object: where Tune stores them (possibly a
bucket), and the rounds the trial reported so far. Read by the W&B callback (to replay a trial's run) and by
the console (to start a resumed sweep's view from the stored rounds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow
from ray.air.constants import EXPR_RESULT_FILE, TRAINING_ITERATION

# What reading a trial's stored file can raise: a missing or unreachable file, a trial with no storage yet.
FS_ERRORS = (OSError, AttributeError, TypeError, pyarrow.ArrowException)


def in_storage(trial: Any, name: str) -> tuple[Any, str]:
    """The filesystem and path of ``name`` in the trial's folder where Tune stores it (possibly a bucket)."""
    return trial.storage.storage_filesystem, f"{trial.path.rstrip('/')}/{name}"


def reported_rounds(trial: Any) -> list[dict]:
    """The results the trial reported so far, from the longer of Tune's stored copy of its
    ``result.json`` and this driver's staging copy (a resumed driver's staging copy starts empty)."""
    from hpo.core.results import parse_results

    texts = []
    try:
        fs, path = in_storage(trial, EXPR_RESULT_FILE)
        with fs.open_input_stream(path) as f:
            texts.append(f.read().decode())
    except FS_ERRORS:
        pass
    try:
        texts.append(Path(trial.local_path, EXPR_RESULT_FILE).read_text())
    except FS_ERRORS:
        pass
    rows = max((parse_results(t) for t in texts), key=len, default=[])
    return [r for r in rows if isinstance(r.get(TRAINING_ITERATION), int)]

"""Tune's result loggers (``result.json``, ``progress.csv``), keeping what this driver wrote.

When a trial starts again after a failure (a lost node, a crashed worker), Tune's JSON and CSV loggers
download the trial's stored copy of their file over the driver's own before appending to it. With the
sweep in object storage, the stored copy is uploaded in the background and can be a round behind: the
round logged since the last upload was lost from ``result.json`` (seen in the node-loss test on S3: rounds
1, 2, 3, 5, 6). The driver's copy is the one the stored copy is made from, so while it exists it is never
older: these loggers download the stored copy only when the driver has none (a resumed driver starts with
an empty staging folder). ``_restore_from_remote`` is a private method of Tune's ``LoggerCallback``;
``tests/test_internals.py`` checks that Tune's loggers still restore through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


class _KeepDriverCopy:
    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        local = Path(trial.local_path, file_name)
        if local.is_file() and local.stat().st_size > 0:
            return  # this driver wrote it, and the stored copy is an upload of it: never newer
        super()._restore_from_remote(file_name, trial)  # type: ignore[misc]


class JsonResults(_KeepDriverCopy, JsonLoggerCallback):
    """``result.json``, one JSON object per reported round."""


class CsvProgress(_KeepDriverCopy, CSVLoggerCallback):
    """``progress.csv``, one row per reported round."""


def result_loggers() -> list[Any]:
    """The loggers to pass in a run's callbacks (Tune then adds no JSON or CSV logger of its own)."""
    return [JsonResults(), CsvProgress()]

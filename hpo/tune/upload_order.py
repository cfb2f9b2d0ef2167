"""Tune's upload of the sweep folder to storage, in an order that a crash cannot turn into lost rounds.

Tune keeps the experiment folder on the driver (its staging copy). Every ten seconds or so it saves its
experiment state there (the trial list with each trial's last result and checkpoint, the searcher's state)
and uploads the whole folder in a background thread, one file after another in the order the local folder
lists them: state files and trial folders (``result.json``, ``progress.csv``, the W&B run) mixed. A driver
killed during an upload left a stored state newer than some trials' stored results. The resumed sweep then
continued such a trial from a checkpoint rounds past its stored results, and the rounds between were never
written again (seen in the S3 crash test: rounds 1, 2, 5, 6), or took an ended trial for complete while its
stored results lacked its last rounds, which its W&B run held.

Here each upload sends the trial folders first, then the files a run stores with its state (the sweep's Optuna
journal: ``store_with_state``), then Tune's state files as Tune had saved them when it started the upload (a
state saved while a slow upload is still going on goes with the next upload), the experiment state itself
last, each written whole (``write_whole``). A failed trial folder or journal leaves the stored state as it was.
The stored state is thus never newer than the stored trial folders, nor the stored searcher state than the stored
study, and ``hpo.tune.settle`` only ever cuts a trial's stored results back to the checkpoint Tune continues it
from. (The journal was uploaded by the searcher when Tune saved it, in Tune's loop: a storage that did not answer
then ended the sweep.)
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hpo.core.results import EXPERIMENT_STATE_PREFIX
from hpo.tune._internals import experiment_uploads_built_by

# Per experiment path in its storage: files of this machine stored with Tune's state, before it, by the path
# they take under the experiment, and the digest of each as last stored.
_WITH_STATE: dict[str, dict[str, Path]] = {}
_STORED: dict[tuple[str, str], str] = {}


def store_with_state(experiment_path: str, name: str, local: Path) -> None:
    """Store ``local`` at ``EXPERIMENT/name`` in each upload of the experiment at ``experiment_path`` (in its
    storage), before Tune's state files, when it changed since it was last stored."""
    _WITH_STATE.setdefault(experiment_path.rstrip("/"), {})[name] = local


class StateLastUpload:
    """One upload of Tune's experiment folder: its subfolders (the trials), then its top-level files as they were
    when the upload was built. Called by Tune's syncer in its thread, with the keywords of ``tune_upload``."""

    def __init__(self, local_dir: str, tune_upload: Callable[..., None]):
        self._tune_upload = tune_upload
        files = []
        for entry in sorted(os.scandir(local_dir), key=lambda e: e.name):
            if entry.is_file():
                try:
                    files.append((entry.name, Path(entry.path).read_bytes()))
                except FileNotFoundError:  # replaced just now: the next upload has it
                    continue
        # the experiment state goes last: it names the trials (and searcher state) the other files describe
        self._state = sorted(files, key=lambda f: f[0].startswith(EXPERIMENT_STATE_PREFIX))

    @property
    def state_files(self) -> list[str]:
        return [name for name, _ in self._state]

    def __call__(self, local_path: str, fs: Any, fs_path: str, exclude: list | None = None) -> None:
        fs.create_dir(fs_path, recursive=True)
        for entry in sorted(os.scandir(local_path), key=lambda e: e.name):
            if entry.is_dir():
                self._tune_upload(local_path=entry.path, fs=fs, fs_path=f"{fs_path}/{entry.name}", exclude=exclude)
        experiment = fs_path.rstrip("/")
        for name, local in sorted(_WITH_STATE.get(experiment, {}).items()):
            data = local.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if _STORED.get((experiment, name)) != digest:
                fs.create_dir(f"{experiment}/{name}".rsplit("/", 1)[0], recursive=True)
                with fs.open_output_stream(f"{experiment}/{name}") as out:
                    out.write(data)
                _STORED[(experiment, name)] = digest
        for name, data in self._state:
            write_whole(fs, f"{fs_path}/{name}", data)

    def __reduce__(self) -> tuple:
        # Tune pickles its storage context, with the syncer's last upload, into each trial's saved state and sends
        # it to each trial's process: pickled, this is Tune's own upload, and the state read here stays here.
        return copy.copy, (self._tune_upload,)


# Object stores show an object once its upload completes: a write cut short there leaves the stored one as it was.
_WHOLE_OBJECT_STORES = ("s3", "gcs")


def write_whole(fs: Any, path: str, data: bytes) -> None:
    """Store ``data`` at ``path`` so that a driver killed at any moment leaves there either the file as it was or all
    of ``data``: on a filesystem, a hidden file beside it, renamed over it once written (Tune's own upload writes in
    place; a kill in that write left an empty experiment state, and the resume forgot the trials it listed)."""
    if fs.type_name in _WHOLE_OBJECT_STORES:
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    folder, name = path.rsplit("/", 1)
    partial = f"{folder}/.{name}.partial"
    with fs.open_output_stream(partial) as out:
        out.write(data)
    fs.move(partial, path)


@contextmanager
def state_uploaded_last() -> Iterator[None]:
    """While the block runs (a sweep's ``Tuner.fit``), Tune uploads its experiment folder in this module's order."""
    with experiment_uploads_built_by(StateLastUpload):
        yield

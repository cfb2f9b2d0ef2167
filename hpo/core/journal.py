"""The TPE searcher's Optuna study, kept beside the sweep whatever its storage.

Optuna's journal needs a file it can append to and lock, so the driver writes it on its own disk: for a
local sweep that is ``EXPERIMENT/hpo/optuna.journal`` itself; for a sweep in object storage it is a
mirror on the driver (under ``HPO_CACHE``) that each upload of Tune's experiment folder stores at
``EXPERIMENT/hpo/optuna.journal`` just before the searcher's state (``hpo.tune.upload_order``). So the
stored journal is never older than the stored searcher state that ``hpo resume`` restores, and
``hpo dashboard`` and the notebook read it from storage like every other file of the sweep.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend

from hpo.core.errors import ExperimentError
from hpo.core.storage import JOURNAL_FILE, META_DIR, SPEC_FILE, Location


class SweepJournal(JournalFileBackend):
    """A journal file on this machine, tied to a sweep folder that may be remote.

    Pickled (in Tune's searcher state) as the sweep's URI only, so a driver that resumes the sweep on
    another machine writes to its own mirror of it."""

    def __init__(self, experiment: str):
        self._experiment = Location.parse(experiment)
        self.local = self._experiment.mirror(META_DIR, JOURNAL_FILE)
        self.local.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(str(self.local))

    def __reduce__(self) -> tuple[Any, ...]:
        return (SweepJournal, (self._experiment.uri,))

    @property
    def experiment(self) -> Location:
        """The sweep folder this journal belongs to."""
        return self._experiment


def start_journal(experiment: Location) -> SweepJournal:
    """The study's journal for a new sweep (a stale mirror from an earlier sweep at the same URI is
    discarded)."""
    if not experiment.is_local:
        mirror = experiment.mirror(META_DIR, JOURNAL_FILE)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        mirror.write_bytes(b"")
    return SweepJournal(experiment.uri)


def fetch_for_resume(experiment: Location) -> None:
    """Before Tune restores the searcher: bring the stored journal to this driver's mirror."""
    if experiment.is_local:
        return
    stored = experiment.child(META_DIR, JOURNAL_FILE)
    mirror = experiment.mirror(META_DIR, JOURNAL_FILE)
    try:
        stored.download_file(mirror)
    except FileNotFoundError:
        raise ExperimentError(f"{experiment}: no Optuna journal at {META_DIR}/{JOURNAL_FILE}; cannot restore the searcher") from None


def read_only_copy(experiment: str | Path | Location) -> Path:
    """A journal file to read the study from: the sweep's own for a local sweep, else a fresh download
    into a temporary folder (reading never writes to a journal that a running sweep appends to)."""
    loc = Location.parse(experiment)
    if not loc.child(META_DIR, SPEC_FILE).is_file():
        raise ExperimentError(f"{loc}: not a sweep folder (no {META_DIR}/{SPEC_FILE}); give the path `hpo sweep` printed")
    stored = loc.child(META_DIR, JOURNAL_FILE)
    if not stored.is_file():
        raise ExperimentError(
            f"{loc}: no Optuna journal at {META_DIR}/{JOURNAL_FILE}; it is written by `hpo sweep` "
            "(a sweep from an older hpo, or one that has not saved its state yet, has none)"
        )
    if loc.is_local:
        return stored.local_path()
    return stored.download_file(Path(tempfile.mkdtemp(prefix="hpo-journal-")) / JOURNAL_FILE)

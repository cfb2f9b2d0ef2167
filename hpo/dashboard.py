"""A sweep's Optuna study, for people: optuna-dashboard served from the journal beside the sweep.

The searcher writes the study to ``EXPERIMENT/hpo/optuna.journal`` (local storage only), so the
dashboard works while the sweep runs and after it finished. Viewing only reads the journal; the
dashboard's own edit buttons (notes, deleting the study) would write to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpo import experiment as exp
from hpo.errors import ExperimentError, HpoError


def journal_file(path: str | Path) -> Path:
    """The sweep's journal, or an ``ExperimentError`` that says why there is none."""
    if "://" in str(path):
        raise ExperimentError(
            f"{path}: the Optuna journal is written for local storage only; "
            "a sweep stored on s3:// or gs:// has no study to open (copy the folder to local disk first)"
        )
    folder = Path(path)
    if not (folder / exp.META_DIR / exp.SPEC_FILE).is_file():
        raise ExperimentError(f"{folder}: not a sweep folder (no {exp.META_DIR}/{exp.SPEC_FILE}); give the path `hpo sweep` printed")
    journal = folder / exp.META_DIR / exp.JOURNAL_FILE
    if not journal.is_file():
        raise ExperimentError(
            f"{folder}: no Optuna journal at {exp.META_DIR}/{exp.JOURNAL_FILE}; the journal is written for local storage "
            "only, by `hpo sweep` (a sweep with s3:// or gs:// storage, or from an older hpo, has none)"
        )
    return journal


def open_storage(path: str | Path) -> Any:
    """The sweep's study storage (optuna ``JournalStorage``); reading it writes nothing."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal_file(path))))


def _summary(storage: Any) -> str:
    parts = []
    for study in storage.get_all_studies():
        states: dict[str, int] = {}
        for t in storage.get_all_trials(storage.get_study_id_from_name(study.study_name), deepcopy=False):
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        parts.append(f"study {study.study_name!r}: {sum(states.values())} trials ({counts or 'none yet'})")
    return "; ".join(parts) or "no study yet"


def serve(path: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on the sweep's study until interrupted (Ctrl+C)."""
    storage = open_storage(path)
    try:
        from optuna_dashboard import run_server
    except ImportError as err:
        raise HpoError("optuna-dashboard is not installed; it comes with the analysis extra: pip install -e '.[analysis]'") from err
    print(f"{path}: {_summary(storage)}")
    print(f"optuna-dashboard: http://{host}:{port}/dashboard (Ctrl+C to stop)", flush=True)
    try:
        run_server(storage, host=host, port=port)
    except OSError as err:  # bind failed: port taken, host not ours
        raise HpoError(f"cannot serve on {host}:{port}: {err.strerror or err}; pick another with --port / --host") from err

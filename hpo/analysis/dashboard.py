"""A sweep's Optuna study, for people: optuna-dashboard served from the journal beside the sweep.

The searcher writes the study to ``EXPERIMENT/hpo/optuna.journal`` (uploaded with Tune's experiment
state when the sweep lives in object storage), so the dashboard works while the sweep runs and after
it finished; for a remote sweep it shows the study as of the dashboard's start. A sweep with several
``objectives`` has a multi-objective study, whose Pareto front optuna-dashboard plots itself (with the objectives'
names, which the searcher records in the study). Viewing only reads the journal; the
dashboard's own edit buttons (notes, deleting the study) would write to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpo.core.errors import HpoError
from hpo.core.journal import read_only_copy
from hpo.core.storage import Location


def open_storage(path: str | Path | Location) -> Any:
    """The sweep's study storage (optuna ``JournalStorage``), local or in object storage; reading it
    writes nothing to the sweep (a remote journal is read from a fresh download)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(read_only_copy(path))))


def _summary(storage: Any) -> str:
    parts = []
    for study in storage.get_all_studies():
        states: dict[str, int] = {}
        for t in storage.get_all_trials(storage.get_study_id_from_name(study.study_name), deepcopy=False):
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        several = f"; {len(study.directions)} objectives: the study page shows their Pareto front" if len(study.directions) > 1 else ""
        parts.append(f"study {study.study_name!r}: {sum(states.values())} trials ({counts or 'none yet'}){several}")
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

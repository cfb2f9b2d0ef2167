"""Reading a sweep's experiment folder: Ray Tune's files plus ours, without starting Ray.

Works while the sweep runs (Tune rewrites its state file periodically) and after it finished. The
winner rule lives here once: the (trial, round) with the best value of the sweep's metric.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo.core.errors import ExperimentError, GateError, SpecError
from hpo.core.pareto import pareto_front
from hpo.core.spec import SweepSpec, describe_yaml_error, load_yaml, parse_spec
from hpo.core.storage import DATA_FILE, META_DIR, SPEC_FILE, Location
from trainables.report import CONVERGED_EARLY as CONVERGED
from trainables.report import ERRORED, FAILED, FINISHED, LATENCY, PENDING, RUNNING, STOPPED, RoundReport, best_of, outcome, values_at_best

__all__ = ["CONVERGED", "ERRORED", "FINISHED", "PENDING", "RUNNING", "STOPPED", "Sweep", "TrialRecord", "best_of", "load_sweep"]


@dataclass
class TrialRecord:
    trial_id: str
    name: str
    folder: Location
    params: dict[str, Any]
    status: str  # Tune's: PENDING, RUNNING, PAUSED, TERMINATED, ERROR
    rounds: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def rounds_done(self) -> int:
        return len(self.rounds)

    @property
    def last(self) -> RoundReport | None:
        """Its last round's report."""
        return RoundReport.from_result(self.rounds[-1]) if self.rounds else None

    @property
    def rounds_planned(self) -> int | None:
        return self.last.rounds_planned if self.rounds else None

    @property
    def failure(self) -> str | None:
        return self.last.failure if self.rounds else None

    @property
    def outcome(self) -> str:
        """How it ended or where it is (``trainables.report.outcome``); a failure with its reason."""
        last = self.last
        said = outcome(self.status, last)
        return f"{FAILED}: {last.failure}" if said == FAILED else said

    def best(self, metric: str, mode: str) -> tuple[float, int] | None:
        """(best value, the round it was reached at); earlier rounds win ties."""
        return best_of(self.rounds, metric, mode)


@dataclass
class Sweep:
    path: Location
    spec: SweepSpec
    data: dict[str, Any]
    trials: list[TrialRecord]
    damaged: list[str] = field(default_factory=list)  # files changed by hand or cut short: which, and what was done
    unreadable_state: str | None = None  # what is wrong with Tune's newest experiment state, when it is empty or cut short

    def ranked(self, within_budget: bool = False) -> list[tuple[TrialRecord, float, int]]:
        """Trials with at least one round, best first, with their best value and round; with ``within_budget``, only
        those that meet the latency gate (``latency_budget``) at that round."""
        rows = [(t, *t.best(self.spec.metric, self.spec.mode)) for t in self.trials if t.best(self.spec.metric, self.spec.mode)]
        if within_budget and self.latency_budget() is not None:
            rows = [row for row in rows if self.meets_latency_budget(row[0])]
        return sorted(rows, key=lambda row: row[1], reverse=self.spec.mode == "max")

    def winner(self, ended_only: bool = False, within_budget: bool = False) -> tuple[TrialRecord, float, int]:
        """The best (trial, value, round); with ``ended_only``, among trials that are no longer running; with
        ``within_budget``, among those that meet the latency gate (none: ``GateError``, with the front)."""
        ended = [row for row in self.ranked() if not ended_only or row[0].outcome not in (RUNNING, PENDING)]
        if not ended:
            what = "ended" if ended_only else "reported a single evaluation round"
            raise ExperimentError(f"{self.path}: no trial {what} with a value of {self.spec.metric}; nothing to promote yet")
        budget = self.latency_budget() if within_budget else None
        if budget is None:
            return ended[0]
        within = [row for row in ended if self.meets_latency_budget(row[0])]
        if not within:
            raise GateError(
                f"{self.path}: no {'ended ' if ended_only else ''}trial meets promotion.gate.max_latency_ms_p95 ({budget:g} ms) with its "
                f"{LATENCY} at its best round; nothing was retrained. The Pareto front:\n"
                + "\n".join(f"  {line}" for line in self.front_lines())
                + "\nraise the budget, or sweep smaller or shorter configurations (e.g. a lower max_length)"
            )
        return within[0]

    # ------------------------------------------------------------------ several objectives
    def objective_values(self, trial: TrialRecord) -> tuple[tuple[float, ...], int] | None:
        """A trial's value of each objective at its best round for the sweep's metric, and that round."""
        return values_at_best(trial.rounds, self.spec.objective_pairs())

    def front(self) -> list[tuple[TrialRecord, tuple[float, ...], int]]:
        """The trials on the Pareto front of the objectives (each at its best round for the sweep's metric), best
        first by the sweep's metric, with their values and that round."""
        rounds = {}
        points = []
        for t in self.trials:
            found = self.objective_values(t)
            if found is not None:
                points.append((t.trial_id, found[0]))
                rounds[t.trial_id] = (t, found[1])
        front = pareto_front(points, [mode for _, mode in self.spec.objective_pairs()])
        return [(rounds[key][0], values, rounds[key][1]) for key, values in front]

    def front_lines(self) -> list[str]:
        """The front as text, one trial a line (none yet: a line that says so)."""
        names = [metric for metric, _ in self.spec.objective_pairs()]
        lines = [f"{t.trial_id}: " + ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values)) + f" (round {rnd})" for t, values, rnd in self.front()]
        return lines or ["no trial has a value of every objective yet"]

    def latency_budget(self) -> float | None:
        """The latency gate's budget (ms) when it chooses the winner: a sweep with a latency objective and
        ``promotion.gate.max_latency_ms_p95`` set (gates on)."""
        gate = self.spec.promotion.gate
        if not gate.enabled or gate.max_latency_ms_p95 is None or LATENCY not in [m for m, _ in self.spec.objective_pairs()]:
            return None
        return gate.max_latency_ms_p95

    def meets_latency_budget(self, trial: TrialRecord) -> bool:
        """Its measured latency at its best round is within ``latency_budget`` (no budget: True)."""
        budget = self.latency_budget()
        if budget is None:
            return True
        found = self.objective_values(trial)
        return found is not None and found[0][[m for m, _ in self.spec.objective_pairs()].index(LATENCY)] <= budget

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.outcome] = out.get(t.outcome, 0) + 1
        return out


def parse_results(text: str) -> list[dict[str, Any]]:
    """The rows of a trial's ``result.json`` (one JSON object per line), up to a torn last line."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line being written right now
                break
            if not isinstance(row, dict):
                break
            rows.append(row)
    return rows


def _read_bytes(loc: Location) -> bytes | None:
    try:
        return loc.read_bytes()
    except FileNotFoundError:
        return None


def _read_text(loc: Location) -> str | None:
    """A file's text (None when there is none); a byte that is not UTF-8 reads as U+FFFD, and the parse that follows
    says what is wrong with the file."""
    data = _read_bytes(loc)
    return None if data is None else data.decode("utf-8", errors="replace")


def _json_object(loc: Location, text: str | None, damaged: list[str]) -> dict[str, Any]:
    """The JSON object a file of ours holds (``{}`` when there is none); a damaged one is noted in ``damaged``."""
    try:
        value = json.loads(text or "{}")
    except ValueError as err:
        damaged.append(f"{loc}: not valid JSON ({err}); read as empty")
        return {}
    if not isinstance(value, dict):
        damaged.append(f"{loc}: not a JSON object; read as empty")
        return {}
    return value


# Tune's experiment state file is read as a file (its JSON layout is checked against the installed Ray by
# tests/test_internals.py); unpickling what it stores is the adapter's (hpo.tune._internals.checkpoint_round).
EXPERIMENT_STATE_PREFIX = "experiment_state-"


def parse_experiment_state(text: str) -> dict[str, dict[str, Any]]:
    """Per trial id, what Tune's experiment state file (``experiment_state-*.json``) says: ``status``,
    ``config``, ``error``, ``last_result`` / ``metric_analysis`` (per metric: max, min, last...),
    ``start_time`` (when Tune set it RUNNING) and ``last_result_time``. Unreadable text gives ``{}``."""
    try:
        return _trial_states(json.loads(text or "{}"))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):  # cut short or edited: as if not written yet
        return {}


def _trial_states(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for entry in data.get("trial_data", []):
        meta = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        run = json.loads(entry[1]) if isinstance(entry[1], str) else entry[1]
        out[meta["trial_id"]] = {
            "status": meta.get("status", "PENDING"),
            "config": meta.get("config", {}),
            "error": run.get("error_filename"),
            "last_result": run.get("last_result") or {},
            "metric_analysis": run.get("metric_analysis") or {},
            "start_time": run.get("start_time"),
            "last_result_time": run.get("last_result_time"),
            "checkpoint_manager": run.get("checkpoint_manager"),  # read by ``checkpoint_round`` when needed
        }
    return out


def tune_states(folder: Location) -> dict[str, dict[str, Any]]:
    """Per trial id, what Tune's newest experiment state says (``parse_experiment_state``)."""
    state = tune_state_file(folder)
    return parse_experiment_state(_read_text(state) or "") if state is not None else {}


def tune_state_file(folder: Location) -> Location | None:
    """Tune's newest experiment state file in ``folder``: the one Tune resumes from (the newest session's by the
    timestamp in its name; a resumed sweep rewrites older ones too)."""
    states = sorted((f for f in folder.list_files() if f.name.startswith(EXPERIMENT_STATE_PREFIX) and f.name.endswith(".json")), key=lambda f: f.name)
    return states[-1] if states else None


def _state_problem(state: Location, text: str | None) -> str | None:
    """What is wrong with Tune's experiment state ``state`` holding ``text`` (None when it is whole): empty, or not the
    JSON object with the trial list that Tune wrote."""
    if not text:
        return f"{state}: Tune's experiment state is empty"
    try:
        value = json.loads(text)
    except ValueError as err:
        return f"{state}: Tune's experiment state is cut short or edited (not valid JSON: {err})"
    if not isinstance(value, dict) or not isinstance(value.get("trial_data"), list):
        return f"{state}: Tune's experiment state holds no trial list (trial_data)"
    return None


def _status_from(rounds: list[dict[str, Any]]) -> str:
    """A trial's status from its own rounds, when Tune's state is unreadable: ended once its last round says so
    (Tune's ``done``) or reached its planned rounds."""
    last = rounds[-1] if rounds else {}
    planned = last.get("rounds_planned")
    return "TERMINATED" if last.get("done") or (planned and last.get("round", 0) >= planned) else "RUNNING"


def _read_trial(sub: Location) -> tuple[Location, str | None, str | None, str | None]:
    """A trial folder's params, results and error (None where a file is missing): three reads, in one go."""
    return sub, _read_text(sub.child("params.json")), _read_text(sub.child("result.json")), _read_text(sub.child("error.txt"))


def load_sweep(path: str | Path | Location) -> Sweep:
    """Read a sweep folder, local or in object storage (``s3://``, ``gs://``), without starting Ray."""
    folder = Location.parse(path)
    spec_file = folder.child(META_DIR, SPEC_FILE)
    if folder.is_file():
        raise ExperimentError(f"{folder}: a file, not a sweep folder; give the folder `hpo sweep` printed")
    spec_bytes = _read_bytes(spec_file)
    if spec_bytes is None:
        raise ExperimentError(f"{folder}: not a sweep folder (no {META_DIR}/{SPEC_FILE}); give the path `hpo sweep` printed")
    import yaml

    try:
        spec = parse_spec(load_yaml(spec_bytes.decode()), str(spec_file))
    except (UnicodeDecodeError, yaml.YAMLError, SpecError) as err:
        if isinstance(err, UnicodeDecodeError):
            cause = f"not UTF-8 text (byte {err.start})"
        else:
            cause = " ".join((describe_yaml_error(err) if isinstance(err, yaml.YAMLError) else str(err)).split())[:300]
        raise ExperimentError(
            f"{spec_file}: the sweep's stored spec is unreadable ({cause}); `hpo sweep` wrote it: put back the resolved "
            "spec of this sweep (or a copy of the spec you ran, with the same name and storage)"
        ) from None
    damaged: list[str] = []
    data = _json_object(folder.child(META_DIR, DATA_FILE), _read_text(folder.child(META_DIR, DATA_FILE)), damaged)
    state = tune_state_file(folder)
    state_text = _read_text(state) if state is not None else None
    statuses = parse_experiment_state(state_text or "")
    problem = _state_problem(state, state_text) if state is not None else None
    if problem is not None:
        damaged.append(f"{problem}; trials' status read from their folders")
    subs = [d for d in folder.list_dirs() if d.name != META_DIR]
    # Object storage answers each read in milliseconds to tens of them: read the trials side by side.
    with ThreadPoolExecutor(1 if folder.is_local else 16) as pool:
        found = [row for row in pool.map(_read_trial, subs) if row[1] is not None]
    trials = []
    for sub, params_text, results_text, error_text in found:
        rounds = parse_results(results_text or "")
        trial_id = rounds[-1]["trial_id"] if rounds else sub.name.rsplit("_", 1)[-1]
        if statuses and trial_id not in statuses and not rounds:
            # A folder Tune's state does not know, with no round: a trial started just before a driver
            # crash that the resumed sweep never ran (or one starting right now: listed from its first round)
            continue
        st = statuses.get(trial_id, {})
        error = None
        if error_text is not None:
            error = (error_text.strip().splitlines()[-1:] or [""])[0]
        status = st.get("status") or ("ERROR" if error is not None else _status_from(rounds) if problem else "RUNNING")
        params = _json_object(sub.child("params.json"), params_text, damaged)
        trials.append(TrialRecord(trial_id, sub.name, sub, params, status, rounds, error))
    # Trials Tune knows of that have no folder yet (pending).
    known = {t.trial_id for t in trials}
    for trial_id, st in statuses.items():
        if trial_id not in known:
            trials.append(TrialRecord(trial_id, f"{spec.name}_{trial_id}", folder.child(f"{spec.name}_{trial_id}"), st["config"], st["status"]))
    return Sweep(folder, spec, data, trials, damaged, problem)


PROMOTED_MARKER = "promotion.json"  # beside the promoted model: which trial and round it is, the retrain's cost


def stored_model(sweep_path: str | Path | Location) -> Location:
    """Where the sweep keeps its retrained winner (and, once written, its card and provenance)."""
    return Location.parse(sweep_path).child(META_DIR, "promotion", "model")


def disk_usage(path: str | Path | Location) -> int:
    return Location.parse(path).size()

"""Warm start: the ended trials of earlier sweeps, read with the sweep reader (local or object storage) and
translated into a new sweep's search space.

What is taken from each earlier sweep (same metric and mode, else refused):

* every trial that ended with a value of the metric: finished, ended on patience, or stopped early by the
  scheduler (failed and errored trials carry no value and are not taken);
* its value at its last recorded round (the round it ended at), and the values of its earlier rounds;
* its parameters that the new space holds with a value it can take; the others are dropped (one warning line
  names them and how many trials they were dropped from), and a trial left without one of the new space's
  parameters is not taken (counted).

The searcher (``hpo.tune.searcher``) enters the trials into its study before it draws, and runs the best
``first_count(num_trials)`` configurations first. Nothing here imports Optuna or Ray.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hpo.core.errors import ExperimentError, WarmStartError
from hpo.core.results import CONVERGED, FINISHED, PENDING, RUNNING, STOPPED, Sweep, load_sweep
from hpo.core.space import describe, in_space
from hpo.core.spec import SweepSpec
from hpo.core.storage import Location
from trainables.report import ITERATION, RoundReport

WARM_START_KEY = "warm_start"  # where a sweep keeps ``WarmStart.record()``: in hpo/data.json
FIRST_AT_MOST = 3  # earlier configurations tried first, at most (and a third of the new sweep's trials)
_ENDED = (FINISHED, CONVERGED, STOPPED)


def first_count(num_trials: int) -> int:
    """How many of the earlier best configurations a sweep of ``num_trials`` trials tries first: min(3, num_trials // 3)."""
    return min(FIRST_AT_MOST, num_trials // 3)


@dataclass(frozen=True)
class WarmTrial:
    """An earlier trial as the new sweep's searcher takes it."""

    source: str  # the earlier sweep's folder
    trial_id: str
    params: dict[str, Any]  # in the new space, each value as the new space holds it
    value: float  # the metric at its last recorded round
    rounds: dict[int, float]  # the metric at each recorded round (Tune's iteration -> value)
    completed: bool  # ran to its end (finished, or ended on patience); False: stopped early by the scheduler

    @property
    def last_round(self) -> int:
        return max(self.rounds, default=0)


@dataclass
class WarmSource:
    """What was taken from one earlier sweep, and what was not."""

    path: str
    sweep: str
    ended: int = 0  # trials that ended with a value of the metric
    taken: int = 0
    without_value: int = 0  # trials that failed or errored
    dropped: dict[str, int] = field(default_factory=dict)  # "name (why)" -> trials it was dropped from
    left_out: dict[str, int] = field(default_factory=dict)  # a parameter of the new space -> trials that lacked it
    left_out_trials: int = 0
    differences: list[str] = field(default_factory=list)  # fixed settings that differ: "training.epochs: 3 there, 2 here"

    def warnings(self) -> list[str]:
        out = []
        if self.dropped:
            named = ", ".join(f"{name} from {n} trial{'s' * (n != 1)}" for name, n in self.dropped.items())
            out.append(f"warm start from {self.path}: parameters outside this sweep's space dropped: {named}")
        if self.left_out_trials:
            lacking = ", ".join(f"{name} ({n})" for name, n in self.left_out.items())
            out.append(f"warm start from {self.path}: {self.left_out_trials} of {self.ended} ended trials left out: they lack a value for {lacking}")
        if self.differences:
            out.append(
                f"warm start from {self.path}: fixed settings differ from this sweep's: {'; '.join(self.differences)} "
                "(its trials' values were measured under its own)"
            )
        return out


@dataclass
class WarmStart:
    """The earlier trials a sweep starts from, and the configurations it tries first (best first)."""

    metric: str
    mode: str
    sources: list[WarmSource]
    trials: list[WarmTrial]
    first: list[dict[str, Any]]

    def record(self) -> dict[str, Any]:
        """What the sweep keeps of it (``hpo/data.json``): ``hpo status``, the sweep's W&B run and the card read it."""
        return {
            "metric": self.metric,
            "mode": self.mode,
            "value": "the metric at each trial's last recorded round",
            "sources": [asdict(s) for s in self.sources],
            "tried_first": self.first,
        }


def ranked(trials: Sequence[WarmTrial], mode: str) -> list[WarmTrial]:
    """Best first, as TPE ranks them: trials that ran to their end by value, then those stopped early, the later
    they were stopped the better (by value among those stopped at the same round)."""

    def key(t: WarmTrial) -> tuple[int, int, float]:
        value = -t.value if mode == "max" else t.value
        return (0, 0, value) if t.completed else (1, -t.last_round, value)

    return sorted(trials, key=key)


def best_first(trials: Sequence[WarmTrial], mode: str, k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct configurations, best first."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for t in ranked(trials, mode):
        key = json.dumps(t.params, sort_keys=True, default=str)
        if len(out) < k and key not in seen:
            seen.add(key)
            out.append(dict(t.params))
    return out


def _differences(earlier: SweepSpec, spec: SweepSpec) -> list[str]:
    """Fixed settings (searched in neither sweep) that differ: the base model, the data, the training settings."""
    searched = set(earlier.search_space) | set(spec.search_space)
    out = []
    if earlier.model != spec.model:
        out.append(f"model: {earlier.model.describe()} there, {spec.model.describe()} here")
    for section in ("data", "training"):
        there, here = getattr(earlier, section).model_dump(mode="json"), getattr(spec, section).model_dump(mode="json")
        for key in here:
            if there.get(key) != here[key] and not (section == "training" and key in searched):
                out.append(f"{section}.{key}: {_short(there.get(key))} there, {_short(here[key])} here")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def translate(sweep: Sweep, spec: SweepSpec) -> tuple[list[WarmTrial], WarmSource]:
    """The ended trials of ``sweep`` in the space of ``spec``, and what was taken and dropped."""
    earlier = sweep.spec
    where = str(sweep.path)
    if (earlier.metric, earlier.mode) != (spec.metric, spec.mode):
        raise WarmStartError(
            f"warm_start: {where} (sweep {earlier.name}) optimized {earlier.metric} ({earlier.mode}), this sweep {spec.name} "
            f"optimizes {spec.metric} ({spec.mode}); warm-start only from sweeps of the same metric and mode"
        )
    source = WarmSource(where, earlier.name, differences=_differences(earlier, spec))
    space_text = describe(spec.search_space)
    trials = []
    for t in sweep.trials:
        if t.outcome not in _ENDED:
            source.without_value += t.outcome not in (RUNNING, PENDING)
            continue
        value = _value(t.rounds[-1], spec.metric) if t.rounds else None
        if value is None:
            source.without_value += 1
            continue
        source.ended += 1
        params = {}
        for name, v in t.params.items():
            param = spec.search_space.get(name)
            ok, held = in_space(param, v) if param is not None else (False, v)
            if ok:
                params[name] = held
                continue
            why = "not searched here" if param is None else f"outside {space_text[name]}"
            source.dropped[f"{name} ({why})"] = source.dropped.get(f"{name} ({why})", 0) + 1
        lacking = [name for name in spec.search_space if name not in params]
        if lacking:
            source.left_out_trials += 1
            for name in lacking:
                source.left_out[name] = source.left_out.get(name, 0) + 1
            continue
        rounds = {int(row[ITERATION]): v for row in t.rounds if ITERATION in row and (v := _value(row, spec.metric)) is not None}
        trials.append(WarmTrial(where, t.trial_id, params, value, rounds, t.outcome != STOPPED))
    source.taken = len(trials)
    if not source.ended:
        raise WarmStartError(
            f"warm_start: {where} (sweep {earlier.name}) has no trial that ended with a value of {spec.metric} "
            f"({_counted(sweep.counts())}); warm-start from a sweep with ended trials"
        )
    return trials, source


def _value(row: dict[str, Any], metric: str) -> float | None:
    """A round's measured value of ``metric``; None when it failed, or the value is not a finite number."""
    value = RoundReport.from_result(row).value(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _counted(counts: dict[str, int]) -> str:
    if not counts:
        return "no trial"
    return ", ".join(f"{n} {outcome}" for outcome, n in counts.items())


def load_warm_start(spec: SweepSpec, echo: Callable[[str], None] = print) -> WarmStart | None:
    """The earlier sweeps of ``spec.warm_start``, read and translated (None when it names none). Each problem
    with one of them (not a sweep folder, no ended trial, another metric or mode) is a ``WarmStartError``."""
    if not spec.warm_start:
        return None
    own = Location.parse(spec.storage).child(spec.name).uri
    places: list[Location] = []
    for path in spec.warm_start:
        loc = Location.parse(path)
        if loc.uri == own:
            raise WarmStartError(f"warm_start: {path} is this sweep's own folder; name an earlier sweep's folder")
        if loc.uri in {p.uri for p in places}:
            raise WarmStartError(f"warm_start: {path} is named twice")
        places.append(loc)
    sources, trials = [], []
    for loc in places:
        try:
            sweep = load_sweep(loc)
        except ExperimentError as err:
            raise WarmStartError(f"warm_start: {err}") from None
        for problem in sweep.damaged:
            echo(f"warning: warm start from {loc}: {problem}")
        taken, source = translate(sweep, spec)
        for line in source.warnings():
            echo(f"warning: {line}")
        sources.append(source)
        trials += taken
    warm = WarmStart(spec.metric, spec.mode, sources, trials, best_first(trials, spec.mode, first_count(spec.budget.num_trials)))
    for line in describe_record(kept_record({WARM_START_KEY: warm.record()})):
        echo(line)
    return warm


def kept_record(data: dict[str, Any]) -> dict[str, Any] | None:
    """The warm start a sweep kept in its ``hpo/data.json`` (``WarmStart.record``), or None: it started cold (or the
    file was edited into something else)."""
    record = data.get(WARM_START_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("sources"), list):
        return None
    sources = [
        {"path": "?", "sweep": "?", "taken": 0, "ended": 0, "left_out_trials": 0, **s, "dropped": s["dropped"] if isinstance(s.get("dropped"), dict) else {}}
        for s in record["sources"]
        if isinstance(s, dict)
    ]
    return {**record, "sources": sources, "tried_first": record.get("tried_first") or []}


def describe_record(record: dict[str, Any] | None) -> list[str]:
    """A kept warm start (``kept_record``), in lines for people (``hpo status``)."""
    if not record:
        return []
    out = []
    for s in record["sources"]:
        dropped = ", ".join(f"{name} from {n}" for name, n in s["dropped"].items()) or "none"
        out.append(
            f"warm start: {s['taken']} of {s['ended']} ended trials of {s['sweep']} ({s['path']}); "
            f"parameters dropped: {dropped}; trials left out: {s['left_out_trials']}"
        )
    first = record["tried_first"]
    if first:
        out.append(f"warm start: tried first, best first: {'; '.join(json.dumps(c, sort_keys=True) for c in first)}")
    return out

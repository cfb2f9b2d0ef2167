"""What a trial reports each round, and the rules everyone reads it by.

A trial reports one ``RoundReport`` per evaluation round (``to_result`` is what goes to Tune and into the
trial's ``result.json``); the driver's searcher, scheduler and janitor and the sweep reader turn Tune's
result dicts back into one with ``RoundReport.from_result``. The keys are the constants below; nothing
else spells them. Two rules live here once:

* ``improves``: whether a value beats the best so far (ties do not), with ``best_of`` and ``BestSoFar``
  built on it; a failed trial's placeholder value never counts;
* ``outcome``: how a trial ended (finished, converged, stopped early, failed, errored) or where it is.

Standard library only: the driver imports this without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The keys of a round's report (Tune adds its own, e.g. ITERATION, the round count it schedules by).
ROUND = "round"  # rounds trained so far, this one included
ROUNDS_PLANNED = "rounds_planned"  # rounds the trial runs when nothing stops it
CONVERGED = "converged"  # True: it ends here, no improvement for `patience` rounds
FAILURE = "failure"  # why it cannot go on (diverged, out of memory); its metric is then a placeholder
TOP_CLASS_SHARE = "val_top_class_share"  # share of the validation set put in its most predicted class
LATENCY = "val_latency_ms_p95"  # ms per text at batch 1, p95 (only when an objective asks for it)
ITERATION = "training_iteration"  # Tune's count of a trial's reports

# A trial putting at least this share of the validation set into one class has learned nothing yet.
SINGLE_CLASS_SHARE = 0.99

# How a trial ended, or where it is (the words ``hpo status`` and the card show).
FINISHED, STOPPED, CONVERGED_EARLY = "finished", "stopped (ASHA)", "converged (patience)"
FAILED, ERRORED, RUNNING, PENDING = "failed", "errored", "running", "pending"

_CONTRACT = (ROUND, ROUNDS_PLANNED, CONVERGED, FAILURE)


@dataclass(frozen=True)
class RoundReport:
    """One evaluation round of a trial: where it is in its plan, how it ended if it did, its figures."""

    round: int
    rounds_planned: int
    metrics: Mapping[str, Any] = field(default_factory=dict)  # val_* and train_* figures, timings
    converged: bool = False
    failure: str | None = None

    @classmethod
    def failed(cls, metric: str, mode: str, reason: str, round: int, rounds_planned: int, also: Sequence[tuple[str, str]] = ()) -> RoundReport:
        """The last report of a trial that cannot go on (NaN loss, out of GPU memory). Its metric (and each
        further objective in ``also``, as (metric, mode)) is the worst possible value, so ASHA never promotes
        it; the rules below never count it."""
        return cls(round, rounds_planned, {m: 0.0 if d == "max" else 1e9 for m, d in [(metric, mode), *also]}, failure=reason)

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> RoundReport:
        """A result as Tune hands it over (or a row of ``result.json``)."""
        return cls(
            round=int(result.get(ROUND, result.get(ITERATION, 0)) or 0),
            rounds_planned=int(result.get(ROUNDS_PLANNED, 0) or 0),
            metrics={k: v for k, v in result.items() if k not in _CONTRACT},
            converged=bool(result.get(CONVERGED, False)),
            failure=result.get(FAILURE) or None,
        )

    def to_result(self) -> dict[str, Any]:
        out = {**self.metrics, ROUND: self.round, ROUNDS_PLANNED: self.rounds_planned}
        if self.failure is not None:
            out[FAILURE] = self.failure
        else:
            out[CONVERGED] = self.converged
        return out

    def value(self, metric: str) -> float | None:
        """This round's measured value of ``metric``; None when it failed (the value is a placeholder)."""
        return None if self.failure is not None else self.metrics.get(metric)

    @property
    def one_class(self) -> bool:
        """It predicts (almost) one class for the whole validation set."""
        return self.metrics.get(TOP_CLASS_SHARE, 0.0) >= SINGLE_CLASS_SHARE


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) for a metric to ``mode`` ("max" or "min"); ties do not."""
    return best is None or (value > best if mode == "max" else value < best)


def best_of(rows: Iterable[Mapping[str, Any]], metric: str, mode: str) -> tuple[float, int] | None:
    """A trial's best: (best value, Tune's iteration it was reached at) over its reported rounds; earlier
    rounds win ties. None before a round with a measured value."""
    best = None
    for row in rows:
        v = RoundReport.from_result(row).value(metric)
        if v is not None and improves(v, best[0] if best else None, mode):
            best = (v, int(row[ITERATION]))
    return best


def values_at_best(rows: Iterable[Mapping[str, Any]], objectives: Sequence[tuple[str, str]]) -> tuple[tuple[float, ...], int] | None:
    """A trial's values of several objectives ((metric, mode) pairs): each read at the round that is best for the
    first one (``best_of``), with Tune's iteration of that round. None before such a round, or when that round
    lacks one of the others."""
    rows = list(rows)
    first, mode = objectives[0]
    best = best_of(rows, first, mode)
    if best is None:
        return None
    row = next(r for r in rows if int(r[ITERATION]) == best[1])
    others = [RoundReport.from_result(row).value(m) for m, _ in objectives[1:]]
    if any(v is None for v in others):
        return None
    return (best[0], *(float(v) for v in others)), best[1]


class BestSoFar:
    """Each trial's best measured value of one metric, from its results as they arrive."""

    def __init__(self, metric: str, mode: str):
        self.metric, self.mode = metric, mode
        self.values: dict[str, float] = {}

    def note(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Take in a result; True when it is the trial's best so far."""
        value = RoundReport.from_result(result).value(self.metric)
        if value is not None and improves(value, self.values.get(trial_id), self.mode):
            self.values[trial_id] = value
            return True
        return False

    def get(self, trial_id: str) -> float | None:
        return self.values.get(trial_id)

    def ranked(self, trial_ids: Iterable[str]) -> list[str]:
        """Those of ``trial_ids`` with a value, best first (the first seen wins ties)."""
        known = [t for t in trial_ids if t in self.values]
        return sorted(known, key=self.values.__getitem__, reverse=self.mode == "max")


def ends_on_patience(rounds_done: int, best_round: int, rounds_planned: int, patience: int | None, patience_from: int) -> bool:
    """The patience rule: no improvement for ``patience`` rounds (since ``best_round``), counted from round
    ``patience_from`` on (ASHA's last rung), with rounds still to go."""
    return patience is not None and patience_from <= rounds_done < rounds_planned and rounds_done - best_round >= patience


def outcome(status: str, last: RoundReport | None) -> str:
    """How a trial ended, or where it is, from Tune's status (TERMINATED, ERROR, RUNNING, PENDING, PAUSED)
    and its last report: failed (its report says why), finished (all planned rounds), converged
    (patience), or stopped early (by the scheduler, before its planned rounds)."""
    if status == "ERROR":
        return ERRORED
    if last is not None and last.failure is not None:
        return FAILED
    if status == "TERMINATED":
        if last is None or not last.rounds_planned or last.round >= last.rounds_planned:
            return FINISHED
        return CONVERGED_EARLY if last.converged else STOPPED
    return RUNNING if status == "RUNNING" else PENDING

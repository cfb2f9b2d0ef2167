"""The sweep's console: a compact live view instead of Ray Tune's per-result tables.

On a terminal, a few lines redrawn in place (rich): trials running / ended by outcome / pending, the best
value so far with its trial, round and configuration, rounds done, elapsed and estimated remaining time,
the W&B mode; each trial that ends prints one line above it, and so does each trial that failed and that
Tune runs again (the failure's last line; its traceback is in the trial's ``error.txt``). Piped (CI, a log
file, ``ray job logs``) only those lines are printed. Ray's own tables and tracebacks come back with
``hpo sweep --verbose``.

A resumed sweep's view starts from the stored record: the rounds each trial had stored when the driver
stopped (its round count, the best value so far, by the rule ``hpo status`` applies) and the trials that had
ended by then.
"""

from __future__ import annotations

import sys
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ray.tune import Callback

from hpo.core.results import PENDING, RUNNING, TrialRecord, best_of
from trainables.report import CONVERGED, FAILURE, ITERATION, ROUND, ROUNDS_PLANNED, improves

# Only what the outcome and best-value rules read from a round is kept per trial.
_ROUND_KEYS = (ITERATION, ROUND, FAILURE, ROUNDS_PLANNED, CONVERGED)
_OPEN: weakref.WeakSet = weakref.WeakSet()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class SweepConsole(Callback):
    """A Tune callback; it holds no state worth saving: a restored sweep's view starts from the stored rounds."""

    def __init__(self, name: str, metric: str, mode: str, num_trials: int, wandb_mode: str, params: list[str]):
        self.name, self.metric, self.mode = name, metric, mode
        self.num_trials, self.wandb_mode, self.params = num_trials, wandb_mode, params
        self._reset()

    def _reset(self) -> None:
        self._rounds: dict[str, list[dict[str, Any]]] = {}
        self._ended: dict[str, str] = {}  # trial id -> outcome
        self._start = time.monotonic()
        self._live: Any = None
        self._console: Any = None
        self._trials: list[Any] = []
        # The best (value, round, trial) so far, kept up to date result by result: finding it again over
        # every trial at each result and each trial end made the view's cost grow with the sweep.
        self._top: tuple[float, int, Any] | None = None
        self._counted: set[str] = set()  # trials whose rounds (or restored record) the best has seen
        self._resumed = False  # the stored rounds of the trials Tune restored are read at the first step
        self._ended_before = 0  # trials that had ended before this run of the sweep (a resume)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k in ("name", "metric", "mode", "num_trials", "wandb_mode", "params")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # ------------------------------------------------------------------------------- Tune's hooks
    def setup(self, **info: Any) -> None:
        from rich.console import Console

        self._start = time.monotonic()
        tty = sys.stdout.isatty()
        self._console = Console() if tty else Console(width=200, highlight=False)
        if tty:
            from rich.live import Live

            self._live = Live(self._panel(), console=self._console, refresh_per_second=2, transient=False)
            self._live.start()
        _OPEN.add(self)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._resumed:
            self._resumed = True
            self._start_from_stored(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._trials = trials
        row = {k: result[k] for k in (*_ROUND_KEYS, self.metric) if k in result}
        self._rounds.setdefault(trial.trial_id, []).append(row)
        self._counted.add(trial.trial_id)
        found = best_of([row], self.metric, self.mode)
        if found is not None:
            self._offer(*found, trial)
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trials = trials
        self._end(trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trials = trials
        self._end(trial, "ERROR")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trials = trials
        allowed = "" if trial.max_failures < 0 else f" of {trial.max_failures} allowed"
        line = f"        {trial.trial_id} failed ({last_error(trial)}); run again from its last checkpoint (failure {trial.num_failures}{allowed})"
        if self._console is not None:
            self._console.print(line, markup=False, soft_wrap=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._trials = trials
        if self._live is not None and iteration % 20 == 0:
            self._refresh()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._trials = trials
        self.close()

    def _start_from_stored(self, trials: list) -> None:
        """The trials Tune restored that had reported before the driver stopped: their stored rounds, read
        side by side (one read a trial, from object storage too), and which of them had ended."""
        from hpo.tune.trial_files import reported_rounds

        restored = [t for t in trials if t.last_result]
        with ThreadPoolExecutor(min(16, len(restored) or 1)) as pool:
            stored = list(pool.map(reported_rounds, restored))
        for trial, rows in zip(restored, stored):
            if not rows:
                continue
            self._rounds[trial.trial_id] = [{k: r[k] for k in (*_ROUND_KEYS, self.metric) if k in r} for r in rows]
            self._counted.add(trial.trial_id)
            found = best_of(self._rounds[trial.trial_id], self.metric, self.mode)
            if found is not None:
                self._offer(*found, trial)
            if trial.status == "TERMINATED":  # (an errored trial is run again by the resume)
                self._ended[trial.trial_id] = self._record(trial).outcome
        self._ended_before = len(self._ended)

    # ------------------------------------------------------------------------------------ drawing
    def _record(self, trial: Any, status: str | None = None) -> TrialRecord:
        rounds = self._rounds.get(trial.trial_id) or ([trial.last_result] if trial.last_result else [])
        return TrialRecord(trial.trial_id, str(trial), None, dict(trial.config), status or trial.status, rounds)  # type: ignore[arg-type]

    def _offer(self, value: float, rnd: int, trial: Any) -> None:
        """A trial's value at a round (its rounds come in order): the new best if strictly better, or
        equal and from a trial `hpo status` ranks first (its folder comes first); earlier rounds win ties."""
        top = self._top
        if top is None or improves(value, top[0], self.mode) or (value == top[0] and trial.trial_id < top[2].trial_id):
            self._top = (value, rnd, trial)

    def _best(self) -> tuple[float, int, Any] | None:
        for trial in self._trials:
            if trial.trial_id in self._counted:
                continue
            # a trial this view saw no result of (restored from a crashed driver): its record, else Tune's
            self._counted.add(trial.trial_id)
            found = self._record(trial).best(self.metric, self.mode)
            if found is None:
                value = (getattr(trial, "metric_analysis", None) or {}).get(self.metric, {}).get(self.mode)
                found = None if value is None else (value, int(trial.last_result.get("training_iteration", 0)))
            if found is not None:
                self._offer(*found, trial)
        return self._top

    def _end(self, trial: Any, status: str) -> None:
        record = self._record(trial, status)
        outcome = record.outcome
        self._ended[trial.trial_id] = outcome
        mine = record.best(self.metric, self.mode)
        what = f"{self.metric} {mine[0]:.4f} (round {mine[1]})" if mine else "no evaluation"
        if status == "ERROR":
            what += f" ({last_error(trial)})"
        line = f"{len(self._ended):>3}/{self.num_trials} ended  {trial.trial_id} {outcome} after {record.rounds_done} round(s): {what}"
        best = self._best()
        if best:
            line += f"  | best {best[0]:.4f} ({best[2].trial_id})"
        line += f"  | {_duration(time.monotonic() - self._start)}{self._remaining()}"
        if self._console is not None:
            self._console.print(line, markup=False, soft_wrap=True)
        self._refresh()

    def _remaining(self) -> str:
        done = len(self._ended) - self._ended_before  # the pace of this run of the sweep
        if done <= 0 or len(self._ended) >= self.num_trials:
            return ""
        left = (time.monotonic() - self._start) * (self.num_trials - len(self._ended)) / done
        return f", ~{_duration(left)} left"

    def _panel(self) -> Any:
        from rich.table import Table

        counts: dict[str, int] = {}
        for outcome in self._ended.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        running = sum(1 for t in self._trials if t.status == "RUNNING" and t.trial_id not in self._ended)
        pending = self.num_trials - running - len(self._ended)
        grid = Table.grid(padding=(0, 1))
        states = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        grid.add_row(f"[bold]{self.name}[/]", f"{running} {RUNNING}, {states or 'none ended'}, {max(pending, 0)} {PENDING} (of {self.num_trials})")
        best = self._best()
        if best:
            config = ", ".join(f"{k}={_fmt(best[2].config.get(k))}" for k in self.params)
            grid.add_row("best so far", f"{self.metric} {best[0]:.4f} ({best[2].trial_id}, round {best[1]}): {config}")
        rounds = sum(len(r) for r in self._rounds.values())
        grid.add_row("progress", f"{rounds} round(s) reported, {_duration(time.monotonic() - self._start)} elapsed{self._remaining()}; W&B {self.wandb_mode}")
        return grid

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._panel())

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._panel())
            self._live.stop()
            self._live = None
        _OPEN.discard(self)


def last_error(trial: Any) -> str:
    """The last line of the trial's latest failure in its ``error.txt`` (Tune writes the whole traceback there)."""
    try:
        lines = [line.strip() for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):  # no error file (yet)
        return "no error recorded"
    return (lines[-1] if lines else "no error recorded")[:200]


def close_all() -> None:
    """Stop any live view still drawing (a sweep interrupted before Tune called its end hook)."""
    for view in list(_OPEN):
        view.close()

"""Running a whole sweep in a fresh process, and reading what it cost from its experiment folder.

Each ``run_sweep`` gets its own Python process (Ray is started once per process), a child of the
benchmark's process. The analysis reads only files (``hpo.core.results.load_sweep`` plus Tune's experiment
state) and never starts Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import QUICKSTART, REPO, BenchError, summarize

WORKER = "_sweep-worker"  # the hidden command of run.py that runs one sweep


# ------------------------------------------------------------------------------------- the child
def worker(job_file: str) -> int:
    """Child side: load the spec, apply overrides, time ``run_sweep``, shut Ray down, write the result."""
    from hpo.sweep.driver import run_sweep
    from hpo.tune.run import shutdown_ray
    from hpo.core.spec import load_spec

    from benchmarks._common import with_overrides

    job = json.loads(Path(job_file).read_text())
    spec = with_overrides(load_spec(job["spec"], {"name": job["name"], "storage": job["storage"]}), job["overrides"])
    events: list[tuple[float, str]] = []

    def echo(msg: str) -> None:  # the driver's progress lines, timestamped: they mark its phases
        events.append((time.time(), msg))
        print(msg, flush=True)

    started = time.time()
    t0 = time.perf_counter()
    try:
        outcome = run_sweep(spec, wandb_mode="offline", echo=echo)
        wall = time.perf_counter() - t0
    finally:
        t1 = time.perf_counter()
        shutdown_ray()
        shutdown_s = time.perf_counter() - t1
    result = {
        "path": outcome.path,
        "wall_s": wall,
        "started_unix": started,
        "ray_shutdown_s": shutdown_s,
        "n_trials": outcome.n_trials,
        "n_errored": outcome.n_errored,
        "wandb_mode": outcome.wandb_mode,
        "phases": _phases(events, started, spec.name),
    }
    Path(job["result"]).write_text(json.dumps(result, indent=2))
    return 0


def _phases(events: list[tuple[float, str]], started: float, name: str) -> dict[str, float | None]:
    """Seconds spent preparing data, starting Ray and in ``Tuner.fit``, from the driver's own lines."""
    def at(prefix: str) -> float | None:
        return next((t for t, msg in events if msg.startswith(prefix)), None)

    def gap(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    tokenized, launched, finished = at("tokenized "), at(f"sweep {name}:"), at("sweep finished")
    return {
        "prepare_s": gap(started, tokenized),
        "ray_start_s": gap(tokenized, launched),
        "tune_s": gap(launched, finished),
        "tune_started_unix": launched,
    }


# ------------------------------------------------------------------------------------ the parent
class SweepRunner:
    """Runs sweeps one after another in child processes under one temporary storage folder.

    Identical requests (same spec file and overrides) run once: ``all`` reuses the search
    benchmark's ASHA+TPE runs for the sweep benchmark, which asks for exactly those sweeps.
    """

    def __init__(self, storage: Path):
        self.storage = storage
        self._done: dict[str, dict[str, Any]] = {}

    def run(self, name: str, overrides: dict[str, Any], spec_file: str = QUICKSTART) -> dict[str, Any]:
        key = json.dumps([spec_file, overrides], sort_keys=True)
        if key in self._done:
            print(f"  {name}: reusing {self._done[key]['name']} (same spec and overrides)", flush=True)
            return self._done[key]
        self.storage.mkdir(parents=True, exist_ok=True)
        job = {"spec": spec_file, "name": name, "storage": str(self.storage), "overrides": overrides, "result": str(self.storage / f"{name}.result.json")}
        job_file = self.storage / f"{name}.job.json"
        job_file.write_text(json.dumps(job))
        log = self.storage / f"{name}.log"
        print(f"  {name}: running in a child process (log: {log})", flush=True)
        start = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), WORKER, str(job_file)], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-30:])
            raise BenchError(f"sweep {name} failed (exit {proc.returncode}); last lines of {log}:\n{tail}")
        result = json.loads(Path(job["result"]).read_text())
        result.update(name=name, overrides=overrides, process_wall_s=time.perf_counter() - start, log=str(log))
        result["analysis"] = analyze(result["path"], result["wall_s"])
        self._done[key] = result
        a = result["analysis"]
        print(
            f"  {name}: {result['wall_s']:.0f}s, {a['trials']} trials ({a['stopped']} stopped by ASHA, {a.get('converged', 0)} on patience), {a['trial_rounds']} rounds, "
            f"best {a['best_value']:.4f}, busy {a['busy_fraction_run_sweep']:.2f}",
            flush=True,
        )
        return result


# --------------------------------------------------------------------------------------- analysis
def _trial_row(t: Any, meta: dict[str, Any], metric: str) -> dict[str, Any]:
    rounds = t.rounds
    first = rounds[0] if rounds else {}
    busy = sum(r.get("train_seconds", 0.0) + r.get("val_seconds", 0.0) for r in rounds)
    # Ray's result timestamps are whole seconds; the experiment state's floats are preferred.
    start = meta.get("start_time") or (first["timestamp"] - first["time_this_iter_s"] if first else None)
    end = meta.get("last_result_time") or (rounds[-1]["timestamp"] if rounds else None)
    entered, startup = first.get("trial_entered_unix"), first.get("startup_seconds")
    first_step = entered + startup if entered is not None and startup is not None else None
    overheads = [r["time_this_iter_s"] - r.get("train_seconds", 0.0) - r.get("val_seconds", 0.0) for r in rounds]
    return {
        "trial_id": t.trial_id,
        "outcome": t.outcome,
        "rounds_done": t.rounds_done,
        "rounds_planned": t.rounds_planned,
        "params": t.params,
        "curve": [r.get(metric) for r in rounds],  # the metric at each round (benchmarks/replay.py)
        "top_class_share_curve": [r.get("val_top_class_share") for r in rounds],
        "busy_s": busy,
        "start_unix": start,
        "end_unix": end,
        "start_source": "experiment_state" if meta.get("start_time") else "result timestamps",
        "startup_s": startup,
        "trial_entered_unix": entered,
        "tune_start_to_first_step_s": first_step - meta["start_time"] if first_step is not None and meta.get("start_time") else None,
        "tune_start_to_entry_s": entered - meta["start_time"] if entered is not None and meta.get("start_time") else None,
        # Seconds of each round that were neither training nor evaluation: the first round carries the
        # trial's start-up, later ones the checkpoint and the report.
        "first_round_overhead_s": overheads[0] if overheads else None,
        "later_round_overhead_s": float(np.median(overheads[1:])) if len(overheads) > 1 else None,
    }


def _handoff_gaps(rows: list[dict[str, Any]], slots: int) -> list[float]:
    """Idle seconds between a trial ending and the next trial starting in its slot.

    Trials take freed slots first come, first served, so the k-th start after the first ``slots``
    ones follows the k-th end."""
    starts = sorted(r["start_unix"] for r in rows if r["start_unix"] is not None)
    ends = sorted(r["end_unix"] for r in rows if r["end_unix"] is not None)
    return [starts[i] - ends[i - slots] for i in range(slots, len(starts)) if i - slots < len(ends)]


def values_in_order(sweep: Any, meta: dict[str, dict[str, Any]]) -> list[float | None]:
    """The sweep's metric at each of its trial-rounds, in the order the rounds ended: each trial's start in Tune's
    state (or its first result's timestamp) plus its ``time_total_s`` at that round. None: a failed round."""
    from trainables.report import RoundReport

    events = []
    for index, t in enumerate(sweep.trials):
        rows = t.rounds
        start = meta.get(t.trial_id, {}).get("start_time") or (rows[0]["timestamp"] - rows[0]["time_this_iter_s"] if rows else 0.0)
        for n, row in enumerate(rows):
            events.append((start + row.get("time_total_s", 0.0), index, n, RoundReport.from_result(row).value(sweep.spec.metric)))
    return [value for *_, value in sorted(events, key=lambda e: e[:3])]


def analyze(path: str, wall_s: float) -> dict[str, Any]:
    """Compute, utilisation and start-up of one finished sweep, from its folder alone."""
    from hpo.core.results import CONVERGED, STOPPED, load_sweep, tune_states
    from hpo.core.storage import Location

    sweep = load_sweep(path)
    meta = tune_states(Location.parse(path))
    rows = [_trial_row(t, meta.get(t.trial_id, {}), sweep.spec.metric) for t in sweep.trials]
    slots = sweep.spec.budget.max_concurrent
    busy = sum(r["busy_s"] for r in rows)
    starts = [r["start_unix"] for r in rows if r["start_unix"] is not None]
    ends = [r["end_unix"] for r in rows if r["end_unix"] is not None]
    span = max(ends) - min(starts) if starts and ends else None
    winner, best, best_round = sweep.winner()
    rounds = sum(r["rounds_done"] for r in rows)
    rungs = set(sweep.spec.scheduler.rungs())
    ordered = sorted(ends)
    return {
        "trials": len(rows),
        "outcomes": sweep.counts(),
        "stopped": sweep.counts().get(STOPPED, 0),
        # ASHA stops at rungs only: a trial stopped anywhere else was kept on by backfill
        "backfilled": sum(1 for t in sweep.trials if t.outcome == STOPPED and t.rounds_done not in rungs),
        "last_trial_alone_s": ordered[-1] - ordered[-2] if len(ordered) > 1 else None,
        "converged": sweep.counts().get(CONVERGED, 0),
        "trial_rounds": rounds,
        "trial_epochs": rounds / sweep.spec.training.rounds_per_epoch,
        "best_value": best,
        "best_metric": sweep.spec.metric,
        "best_mode": sweep.spec.mode,
        "best_trial": winner.trial_id,
        "best_round": best_round,
        "best_params": winner.params,
        "slots": slots,
        "busy_s": busy,
        "busy_fraction_run_sweep": busy / (wall_s * slots),
        "trials_span_s": span,
        "busy_fraction_trials_span": busy / (span * slots) if span else None,
        "startup_s": summarize([r["startup_s"] for r in rows]),
        "tune_start_to_first_step_s": summarize([r["tune_start_to_first_step_s"] for r in rows]),
        "tune_start_to_entry_s": summarize([r["tune_start_to_entry_s"] for r in rows]),
        "handoff_gap_s": summarize(_handoff_gaps(rows, slots)),
        "first_round_overhead_s": summarize([r["first_round_overhead_s"] for r in rows]),
        "later_round_overhead_s": summarize([r["later_round_overhead_s"] for r in rows]),
        "first_trial_start_unix": min(starts) if starts else None,
        # the best so far against compute (benchmarks/search.py)
        "values_in_order": values_in_order(sweep, meta),
        "per_trial": rows,
    }

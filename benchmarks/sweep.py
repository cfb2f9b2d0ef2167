"""How busy a sweep keeps its slots: the quickstart sweep, W&B offline, timed end to end.

busy fraction = Σ over trials and rounds of (train_seconds + val_seconds) / (wall × max_concurrent),
with wall the time ``run_sweep`` took (data preparation and Ray start included), and again with wall
from the first trial's start to the last trial's end. Repetition ``i`` runs the quickstart with
``searcher.seed = i`` (repetition 0 is the quickstart as shipped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._common import command_line, fmt, fmt_stat, machine_info, measured, merged, summarize, write_outputs
from benchmarks._sweeps import SweepRunner

# --quick: a smoke version of the same sweep, seconds per trial.
QUICK = {"data": {"train_size": 600, "test_size": 100}, "training": {"max_length": 64, "epochs": 2}, "scheduler": {"max_rounds": 4}, "budget": {"num_trials": 4}}


def plans(quick: bool, reps: int) -> list[tuple[str, dict[str, Any]]]:
    base = QUICK if quick else {}
    return [(f"{'quick-' if quick else ''}sweep-seed{i}", merged(base, {"searcher": {"seed": i}})) for i in range(reps)]


def run(out: Path, quick: bool, reps: int, runner: SweepRunner) -> dict[str, Any]:
    machine = machine_info()
    print(f"sweep: quickstart{' (quick)' if quick else ''}, {reps} repetition(s), each in a fresh process", flush=True)
    results = [runner.run(name, overrides) for name, overrides in plans(quick, reps)]
    payload = {"benchmark": "sweep", "machine": machine, "quick": quick, "runs": results, "summary": _summary(results), "command": command_line()}
    write_outputs(out, "sweep-quick" if quick else "sweep", payload, markdown(payload))
    return payload


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    def per_run(key: str) -> dict[str, Any]:
        return summarize([r["analysis"][key] for r in results])

    def pooled(key: str) -> dict[str, Any]:  # per-trial figures, over every trial of every repetition
        return summarize([row[key] for r in results for row in r["analysis"]["per_trial"]])

    launch = [r["analysis"]["first_trial_start_unix"] - r["phases"]["tune_started_unix"] for r in results if r["phases"]["tune_started_unix"] and r["analysis"]["first_trial_start_unix"]]
    gaps = [g for r in results for g in r["analysis"]["handoff_gap_s"]["values"]]
    return {
        "wall_s": summarize([r["wall_s"] for r in results]),
        "prepare_s": summarize([r["phases"]["prepare_s"] for r in results]),
        "ray_start_s": summarize([r["phases"]["ray_start_s"] for r in results]),
        "tune_s": summarize([r["phases"]["tune_s"] for r in results]),
        "tune_start_to_first_trial_s": summarize(launch),
        **{k: per_run(k) for k in ("trials", "stopped", "backfilled", "last_trial_alone_s", "trial_rounds", "trial_epochs", "best_value", "busy_fraction_run_sweep", "busy_fraction_trials_span")},
        **{k: pooled(k) for k in ("startup_s", "tune_start_to_first_step_s", "tune_start_to_entry_s", "first_round_overhead_s", "later_round_overhead_s")},
        "handoff_gap_s": summarize(gaps),
        "slots": results[0]["analysis"]["slots"],
        "metric": results[0]["analysis"]["best_metric"],
    }


def markdown(p: dict[str, Any]) -> str:
    s, m, runs = p["summary"], p["machine"], p["runs"]
    where = m["gpu"] or f"{m['cpus_usable']} CPU cores"
    n = len(runs)
    rows = [
        ("`run_sweep` wall", fmt_stat(s["wall_s"], 0, " s")),
        ("&nbsp;&nbsp;data preparation (Ray starting meanwhile) / rest of Ray start / `Tuner.fit`", " / ".join(fmt(s[k]["median"], 0) for k in ("prepare_s", "ray_start_s", "tune_s")) + " s"),
        ("trials (stopped by ASHA)", f"{fmt_stat(s['trials'], 0)} ({fmt_stat(s['stopped'], 0)})"),
        ("trials kept on by backfill, then stopped off a rung", fmt_stat(s["backfilled"], 0)),
        ("the last trial running alone at the end (one slot idle)", fmt_stat(s["last_trial_alone_s"], 0, " s")),
        ("trial-rounds (trial-epochs)", f"{fmt_stat(s['trial_rounds'], 0)} ({fmt_stat(s['trial_epochs'], 1)})"),
        (f"best {s['metric']}", fmt_stat(s["best_value"], 4)),
        (f"**busy fraction**: Σ(train + val seconds) / (`run_sweep` wall × {s['slots']} slots)", f"**{fmt_stat(s['busy_fraction_run_sweep'], 2)}**"),
        ("busy fraction, wall = first trial start → last trial end", fmt_stat(s["busy_fraction_trials_span"], 2)),
        ("`Tuner.fit` start → first trial running", fmt_stat(s["tune_start_to_first_trial_s"], 1, " s")),
        ("trial start-up: trial function entered → first optimizer step", fmt_stat(s["startup_s"], 1, " s")),
        ("Tune marks the trial running (actor up) → first optimizer step", fmt_stat(s["tune_start_to_first_step_s"], 1, " s")),
        ("slot hand-off: a trial's last result → the next trial running", fmt_stat(s["handoff_gap_s"], 1, " s")),
        ("first round, seconds beyond train + val (start-up, checkpoint, report)", fmt_stat(s["first_round_overhead_s"], 1, " s")),
        ("later rounds, seconds beyond train + val (checkpoint, report)", fmt_stat(s["later_round_overhead_s"], 2, " s")),
    ]
    spec = "the quickstart spec" + (" shrunk by --quick (600 train texts, max length 64, 4 trials)" if p["quick"] else "")
    lines = [
        f"**Sweep utilisation**: {spec}, W&B offline, {where}; median (min–max) over {n} sweep(s) with searcher seeds 0–{n - 1}; "
        "per-trial rows pool all trials:",
        "",
        "| | |",
        "|---|---:|",
        *[f"| {a} | {b} |" for a, b in rows],
        *measured(p, ("ray", "torch")),
    ]
    return "\n".join(lines)

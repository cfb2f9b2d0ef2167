"""Search efficiency: ASHA + TPE (the quickstart as shipped) against random search without early
stopping (``searcher.type: random``, ``scheduler.type: fifo``), same space, trials and data, per seed.

Compute is counted in trial-rounds (evaluation rounds all trials ran) and trial-epochs; quality is the
best validation value any trial reached in any round (``Sweep.winner()``, the rule promotion uses).
The goal in the issue: within 0.5 points of random search's best with at most 40% of its compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._common import GOAL_COMPUTE, GOAL_POINTS, command_line, fmt, fmt_stat, machine_info, measured, merged, ratio, summarize, write_outputs
from benchmarks._sweeps import SweepRunner

ARMS = {
    "asha_tpe": {},
    "random_fifo": {"searcher": {"type": "random"}, "scheduler": {"type": "fifo", "patience": None}},
}
LABELS = {"asha_tpe": "ASHA + TPE", "random_fifo": "random, no early stopping"}
TOLERANCE = 1e-9  # a difference of exactly 0.5 points (4 of 800 examples) is within the goal, not lost to float error
# --quick: two trials per arm on a few hundred short texts.
QUICK = {"data": {"train_size": 400, "test_size": 100}, "training": {"max_length": 64, "epochs": 2}, "scheduler": {"max_rounds": 4}, "budget": {"num_trials": 2}}


def plans(quick: bool, seeds: int) -> list[tuple[str, int, str, dict[str, Any]]]:
    """(arm, seed, sweep name, overrides), the arms alternating seed by seed."""
    base = QUICK if quick else {}
    out = []
    for seed in range(seeds):
        for arm, extra in ARMS.items():
            overrides = merged(merged(base, extra), {"searcher": {"seed": seed}})
            out.append((arm, seed, f"{'quick-' if quick else ''}search-{arm}-seed{seed}", overrides))
    return out


def run(out: Path, quick: bool, seeds: int, runner: SweepRunner) -> dict[str, Any]:
    machine = machine_info()
    print(f"search: {' vs '.join(LABELS.values())}, {seeds} seed(s){' (quick)' if quick else ''}, one sweep at a time", flush=True)
    runs = []
    for arm, seed, name, overrides in plans(quick, seeds):
        result = runner.run(name, overrides)
        runs.append({"arm": arm, "seed": seed, **result})
    payload = {"benchmark": "search", "machine": machine, "quick": quick, "runs": runs, "summary": _summary(runs), "command": command_line()}
    write_outputs(out, "search-quick" if quick else "search", payload, markdown(payload))
    return payload


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    arms: dict[str, Any] = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        arms[arm] = {
            "best_value": summarize([r["analysis"]["best_value"] for r in rs]),
            "trial_rounds": summarize([r["analysis"]["trial_rounds"] for r in rs]),
            "trial_epochs": summarize([r["analysis"]["trial_epochs"] for r in rs]),
            "wall_s": summarize([r["wall_s"] for r in rs]),
            "stopped": summarize([r["analysis"]["stopped"] for r in rs]),
            "converged": summarize([r["analysis"].get("converged", 0) for r in rs]),
            "trials": summarize([r["analysis"]["trials"] for r in rs]),
        }
    a, b = arms["asha_tpe"], arms["random_fifo"]
    by_seed = {(r["arm"], r["seed"]): r["analysis"] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    paired = [
        {
            "seed": s,
            "compute_ratio": ratio(by_seed[("asha_tpe", s)]["trial_rounds"], by_seed[("random_fifo", s)]["trial_rounds"]),
            "best_diff_points": 100 * (by_seed[("asha_tpe", s)]["best_value"] - by_seed[("random_fifo", s)]["best_value"]),
        }
        for s in seeds
        if ("asha_tpe", s) in by_seed and ("random_fifo", s) in by_seed
    ]
    compute = ratio(a["trial_rounds"]["median"], b["trial_rounds"]["median"])
    diff = 100 * (a["best_value"]["median"] - b["best_value"]["median"])
    metric = runs[0]["analysis"]["best_metric"]
    sign = -1 if metric == "val_loss" else 1  # "within 0.5 points" means not worse by more than that
    return {
        "metric": metric,
        "arms": arms,
        "compute_ratio_of_medians": compute,
        "wall_ratio_of_medians": ratio(a["wall_s"]["median"], b["wall_s"]["median"]),
        "best_diff_points_of_medians": diff,
        "paired": paired,
        "goal": {
            "text": f"ASHA+TPE within {GOAL_POINTS} points of random search's best with at most {GOAL_COMPUTE:.0%} of its compute (on the medians)",
            "within_points": sign * diff >= -GOAL_POINTS - TOLERANCE,
            "within_compute": compute is not None and compute <= GOAL_COMPUTE + TOLERANCE,
        },
    }


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _row(name: str, x: dict[str, Any]) -> str:
    return (
        f"| {name} | {fmt_stat(x['best_value'], 4)} | {fmt_stat(x['trial_rounds'], 0)} | {fmt_stat(x['trial_epochs'], 1)} "
        f"| {fmt_stat(x['wall_s'], 0, ' s')} | {fmt_stat(x['stopped'], 0)} | {fmt_stat(x['converged'], 0)} |"
    )


def markdown(p: dict[str, Any]) -> str:
    s, m, runs = p["summary"], p["machine"], p["runs"]
    a, b = s["arms"]["asha_tpe"], s["arms"]["random_fifo"]
    seeds = len({r["seed"] for r in runs})
    trials = fmt(a["trials"]["median"], 0)
    where = m["gpu"] or f"{m['cpus_usable']} CPU cores"
    g = s["goal"]
    lines = [
        f"**Search efficiency**: {trials} trials per sweep, {'--quick sizes' if p['quick'] else 'the quickstart spec'}, "
        f"{where}; median (min–max) over searcher seeds 0–{seeds - 1}:",
        "",
        f"| search | best {s['metric']} | trial-rounds | trial-epochs | wall | stopped by ASHA | ended on patience |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _row(LABELS["asha_tpe"], a),
        _row(LABELS["random_fifo"], b),
        f"| **ASHA+TPE vs random** | **{s['best_diff_points_of_medians']:+.2f} points** | **{fmt(100 * s['compute_ratio_of_medians'], 0)}% of the compute** | "
        f"| {fmt(100 * s['wall_ratio_of_medians'], 0) if s['wall_ratio_of_medians'] else 'n/a'}% of the wall time | | |",
        "",
        f"Goal: within {GOAL_POINTS} points with at most {GOAL_COMPUTE:.0%} of the compute: accuracy {_met(g['within_points'])}, "
        f"compute {_met(g['within_compute'])}. Per seed (compute ratio, Δ points): "
        + ", ".join(f"seed {q['seed']}: {fmt(100 * q['compute_ratio'], 0)}%, {q['best_diff_points']:+.2f}" for q in s["paired"])
        + ".",
        *measured(p, ("ray", "optuna")),
    ]
    return "\n".join(lines)

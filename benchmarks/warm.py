"""Warm start: does a sweep started from an earlier sweep's trials get ahead?

Per repetition r, on the quickstart spec: the *earlier* sweep (searcher seed r), then the same sweep with searcher
seed 100 + r twice, *cold* and *warm* (``warm_start: [the earlier sweep]``). For each of the two: the compute it ran
until one of its trials reached the earlier sweep's best value (within ``GOAL_POINTS`` points), in trial-rounds
counted in the order the rounds ended (each trial's start in Tune's state + its ``time_total_s`` at that round);
None when none of its trials reached it. The earlier sweep's own figure is the compute it ran until its best.
Medians over repetitions, of the repetitions that reached it (how many did is said).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._common import GOAL_POINTS, command_line, first_within, fmt, fmt_stat, machine_info, measured, merged, ratio, summarize, write_outputs
from benchmarks._sweeps import SweepRunner, values_in_order

ARMS = ("earlier", "cold", "warm")
LABELS = {"earlier": "earlier sweep (seed r)", "cold": "cold, seed 100 + r", "warm": "warm-started from the earlier sweep, seed 100 + r"}
SEED_OFFSET = 100  # the second searcher seed: another sequence of draws than the earlier sweep's
# --quick: three trials per sweep (so that one earlier configuration runs first) on a few hundred short texts.
QUICK = {"data": {"train_size": 400, "test_size": 100}, "training": {"max_length": 64, "epochs": 2}, "scheduler": {"max_rounds": 4}, "budget": {"num_trials": 3}}


def rounds_to_reach(path: str, target: float, mode: str) -> dict[str, Any]:
    """Trial-rounds a sweep ran until a round of its metric reached ``target`` (within GOAL_POINTS points), in the order
    its rounds ended; the sweep's total trial-rounds; and its trials' configurations."""
    from hpo.core.results import load_sweep, tune_states
    from hpo.core.storage import Location

    sweep = load_sweep(path)
    values = values_in_order(sweep, tune_states(Location.parse(path)))
    return {"rounds_to_reach": first_within(values, target, GOAL_POINTS, mode), "trial_rounds": len(values), "configs": [t.params for t in sweep.trials]}


def run(out: Path, quick: bool, reps: int, runner: SweepRunner) -> dict[str, Any]:
    machine = machine_info()
    print(f"warm: an earlier sweep, then cold and warm-started sweeps with another searcher seed; {reps} repetition(s){' (quick)' if quick else ''}", flush=True)
    base = QUICK if quick else {}
    prefix = "quick-" if quick else ""
    runs = []
    for rep in range(reps):
        earlier = runner.run(f"{prefix}warm-earlier-{rep}", merged(base, {"searcher": {"seed": rep}}))
        later = merged(base, {"searcher": {"seed": SEED_OFFSET + rep}})
        cold = runner.run(f"{prefix}warm-cold-{rep}", later)
        warm = runner.run(f"{prefix}warm-warm-{rep}", merged(later, {"warm_start": [earlier["path"]]}))
        a = earlier["analysis"]
        target, metric = a["best_value"], a["best_metric"]
        mode = "min" if metric == "val_loss" else "max"
        row = {"rep": rep, "target": target, "metric": metric, "earlier_best_params": a["best_params"]}
        for arm, result in (("earlier", earlier), ("cold", cold), ("warm", warm)):
            reach = rounds_to_reach(result["path"], target, mode)
            row[arm] = {**reach, "best_value": result["analysis"]["best_value"], "wall_s": result["wall_s"], "path": result["path"], "log": result["log"]}
        row["tried_first"] = _tried_first(warm["path"])
        row["warm_ran_earlier_best"] = bool(row["tried_first"]) and all(c in row["warm"]["configs"] for c in row["tried_first"])
        runs.append(row)
    payload = {"benchmark": "warm", "machine": machine, "quick": quick, "runs": runs, "summary": _summary(runs), "command": command_line()}
    write_outputs(out, "warm-quick" if quick else "warm", payload, markdown(payload))
    return payload


def _tried_first(path: str) -> list[dict[str, Any]]:
    """The earlier configurations the warm sweep ran first, as it recorded them."""
    from hpo.core.results import load_sweep
    from hpo.core.warm import WARM_START_KEY

    return (load_sweep(path).data.get(WARM_START_KEY) or {}).get("tried_first") or []


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    arms = {}
    for arm in ARMS:
        reached = [r[arm]["rounds_to_reach"] for r in runs]
        arms[arm] = {
            "rounds_to_reach": summarize(reached),
            "reached": sum(x is not None for x in reached),
            "trial_rounds": summarize([r[arm]["trial_rounds"] for r in runs]),
            "best_value": summarize([r[arm]["best_value"] for r in runs]),
            "wall_s": summarize([r[arm]["wall_s"] for r in runs]),
        }
    cold, warm = arms["cold"]["rounds_to_reach"]["median"], arms["warm"]["rounds_to_reach"]["median"]
    return {
        "metric": runs[0]["metric"],
        "repetitions": len(runs),
        "within_points": GOAL_POINTS,
        "arms": arms,
        "warm_over_cold_rounds_to_reach": ratio(warm, cold),
        "warm_ran_earlier_best": sum(r["warm_ran_earlier_best"] for r in runs),
    }


def markdown(p: dict[str, Any]) -> str:
    s, m, runs = p["summary"], p["machine"], p["runs"]
    n = s["repetitions"]
    where = m["gpu"] or f"{m['cpus_usable']} CPU cores"
    lines = [
        f"**Warm start**: {'--quick sizes' if p['quick'] else 'the quickstart spec'}, {where}; median (min–max) over {n} repetition(s). "
        f"Reached: a round within {s['within_points']} points of the earlier sweep's best {s['metric']}.",
        "",
        f"| sweep | reached | trial-rounds to reach it | trial-rounds in all | best {s['metric']} | wall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        a = s["arms"][arm]
        lines.append(
            f"| {LABELS[arm]} | {a['reached']} of {n} | {fmt_stat(a['rounds_to_reach'], 0)} | {fmt_stat(a['trial_rounds'], 0)} "
            f"| {fmt_stat(a['best_value'], 4)} | {fmt_stat(a['wall_s'], 0, ' s')} |"
        )
    w = s["warm_over_cold_rounds_to_reach"]
    lines += [
        "",
        f"Warm over cold, trial-rounds to reach the earlier best (medians): {fmt(100 * w, 0) + '%' if w is not None else 'n/a'}. "
        f"The warm sweep ran the earlier sweep's best configuration(s) in {s['warm_ran_earlier_best']} of {n}. Per repetition "
        "(earlier best; rounds to reach it: cold, warm): "
        + ", ".join(
            f"{r['rep']}: {r['target']:.4f}; {r['cold']['rounds_to_reach'] or 'not reached'}, {r['warm']['rounds_to_reach'] or 'not reached'}" for r in runs
        )
        + ".",
        *measured(p, ("ray", "optuna")),
    ]
    return "\n".join(lines)

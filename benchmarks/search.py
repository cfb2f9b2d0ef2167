"""Search efficiency: ASHA + TPE (the quickstart as shipped) against random search without early
stopping (``searcher.type: random``, ``scheduler.type: fifo``), and against random search with the quickstart's
early stopping unchanged (``searcher.type: random``), same space, trials and data, per seed.

Compute is counted in trial-rounds (evaluation rounds all trials ran) and trial-epochs; quality is the
best validation value any trial reached in any round (``Sweep.winner()``, the rule promotion uses).

Two goals are checked. The earlier one, on the medians over seeds: ASHA + TPE within GOAL_POINTS points of
random search's best with at most GOAL_COMPUTE of its compute. The newer one, per seed, on the anytime curve
(the best so far against trial-rounds, the rounds counted in the order they ended): ASHA + TPE's best so far
comes within REACH_POINTS points of random search's final best after at most REACH_COMPUTE of random search's
trial-rounds, on at least 5 of 6 seeds. The same figures for random search with ASHA split the gain into the
searcher's share (ASHA + TPE against ASHA + random) and the scheduler's (ASHA + random against random alone).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import GOAL_COMPUTE, GOAL_POINTS, REACH_COMPUTE, REACH_POINTS, REACH_SEEDS, BenchError, best_so_far, command_line, first_within, fmt, fmt_stat, machine_info, measured, merged, ratio, summarize, write_outputs
from benchmarks._sweeps import SweepRunner
from trainables.report import SINGLE_CLASS_SHARE  # the sweep's own one-class rule

RANDOM = {"searcher": {"type": "random"}}
ARMS = {
    "asha_tpe": {},
    "random_asha": RANDOM,  # the quickstart's scheduler unchanged
    "random_fifo": merged(RANDOM, {"scheduler": {"type": "fifo", "patience": None}}),
}
LABELS = {"asha_tpe": "ASHA + TPE", "random_asha": "ASHA + random", "random_fifo": "random, no early stopping"}
BASELINE = "random_fifo"  # the arm the others are measured against
TOLERANCE = 1e-9  # a difference of exactly 0.5 points (4 of 800 examples) is within the goal, not lost to float error
# The anytime curve's compute grid: every 5 % of random search's trial-rounds, and the goal's third.
FRACTIONS = sorted({k / 20 for k in range(1, 21)} | {REACH_COMPUTE})
TABLE_FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.25, REACH_COMPUTE, 0.4, 0.5, 0.6, 0.8, 1.0)  # the rows the markdown shows
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


def run(out: Path, quick: bool, seeds: int, runner: SweepRunner, resume: bool = False) -> dict[str, Any]:
    """Every arm on seeds 0 to ``seeds`` - 1; with ``resume``, the runs an earlier, cut-short run saved in ``out`` are
    kept and only the (arm, seed) pairs it lacks are run."""
    machine, command = machine_info(), command_line()
    print(f"search: {' vs '.join(LABELS.values())}, {seeds} seed(s){' (quick)' if quick else ''}, one sweep at a time", flush=True)
    runs: list[dict[str, Any]] = []
    if resume:
        earlier = _load(out / f"{'search-quick' if quick else 'search'}.json")
        if bool(earlier.get("quick")) != quick:
            raise BenchError("--resume: the saved run's sizes differ (--quick or not)")
        runs = [r for r in earlier["runs"] if r["seed"] < seeds]
        then = f"  # then, after it was cut short: {command}"
        machine, command = earlier["machine"], earlier["command"] + ("" if earlier["command"].endswith(then) else then)
        print(f"  kept {len(runs)} run(s) of {out}: seeds {sorted({r['seed'] for r in runs})}", flush=True)
    done = {(r["arm"], r["seed"]) for r in runs}
    last_arm = list(ARMS)[-1]
    for arm, seed, name, overrides in plans(quick, seeds):
        if (arm, seed) in done:
            continue
        result = runner.run(name, overrides)
        runs.append({"arm": arm, "seed": seed, **result})
        if arm == last_arm and seed < seeds - 1:
            # every arm has run this seed: save what there is, so a run cut short still reports its seeds
            _write(out, machine, quick, runs, seeds, quiet=True, command=command)
    return _write(out, machine, quick, runs, seeds, quiet=False, command=command)


def _load(source: Path) -> dict[str, Any]:
    try:
        earlier = json.loads(source.read_text())
    except (OSError, ValueError) as err:
        raise BenchError(f"{source}: cannot read it as a search benchmark's JSON ({err})") from err
    if earlier.get("benchmark") != "search" or not earlier.get("runs"):
        raise BenchError(f"{source} is not a search benchmark's JSON with runs (benchmarks/results/search.json)")
    return earlier


def reanalyse(out: Path, source: Path) -> dict[str, Any]:
    """The tables, curves and plot of an earlier run's ``search.json`` computed again by this version of the analysis,
    with the runs, machine and command of the measurement unchanged (written to ``out``; no sweep runs)."""
    earlier = _load(source)
    runs = earlier["runs"]
    planned = earlier.get("seeds_planned", len({r["seed"] for r in runs}))
    return _write(out, earlier["machine"], bool(earlier.get("quick")), runs, planned, quiet=False, command=earlier.get("command"))


def _write(out: Path, machine: dict[str, Any], quick: bool, runs: list[dict[str, Any]], planned: int, quiet: bool, command: str | None = None) -> dict[str, Any]:
    name = "search-quick" if quick else "search"
    payload = {"benchmark": "search", "machine": machine, "quick": quick, "seeds_planned": planned, "runs": runs, "summary": _summary(runs), "command": command or command_line()}
    payload["plot"] = plot(out / f"{name}.png", payload["summary"])
    write_outputs(out, name, payload, markdown(payload), quiet=quiet)
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
        "mode": runs[0]["analysis"]["best_mode"],
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
        "reach": _reach(runs),
        "anytime": _anytime(runs),
        "noise": _noise(runs),
        "tolerance": _tolerance(runs),
    }


# ------------------------------------------------------------------------ per seed, on the anytime curve
def _complete_seeds(runs: list[dict[str, Any]]) -> tuple[dict[tuple[str, int], dict[str, Any]], list[int]]:
    """Each run's analysis by (arm, seed), and the seeds every arm ran."""
    by_seed = {(r["arm"], r["seed"]): r["analysis"] for r in runs}
    return by_seed, sorted(s for s in {r["seed"] for r in runs} if all((arm, s) in by_seed for arm in ARMS))


def _median_share(shares: list[float | None]) -> float | None:
    """The median over seeds, a seed that never got there counting as more than any; None when that is the median."""
    xs = [math.inf if x is None else x for x in shares]
    med = float(np.median(xs)) if xs else math.inf
    return med if math.isfinite(med) else None


def _rounds_to_reach(a: dict[str, Any], base: dict[str, Any], points: float) -> tuple[int | None, bool]:
    """The trial-rounds until the arm's best so far came within ``points`` of random search's final best (None: never),
    and whether that is at most REACH_COMPUTE of random search's trial-rounds."""
    n = first_within(a["values_in_order"], base["best_value"], points, a["best_mode"])
    return n, n is not None and n <= REACH_COMPUTE * base["trial_rounds"] + TOLERANCE


def _reach(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per seed and arm: the trial-rounds until the best so far came within REACH_POINTS points of random search's final
    best, and whether that is at most REACH_COMPUTE of random search's trial-rounds; seeds meeting it, per arm."""
    by_seed, seeds = _complete_seeds(runs)
    per_seed = []
    for seed in seeds:
        base = by_seed[(BASELINE, seed)]
        budget = REACH_COMPUTE * base["trial_rounds"]
        cells = {}
        for arm in ARMS:
            a = by_seed[(arm, seed)]
            n, within = _rounds_to_reach(a, base, REACH_POINTS)
            cells[arm] = {
                "rounds_to_reach": n,
                "share_of_baseline": ratio(n, base["trial_rounds"]),
                "within_budget": within,
                "trial_rounds": a["trial_rounds"],
                "best_value": a["best_value"],
            }
        per_seed.append({"seed": seed, "target": base["best_value"], "baseline_trial_rounds": base["trial_rounds"], "budget_trial_rounds": budget, "arms": cells})
    arms = {
        arm: {
            "met_on": sum(row["arms"][arm]["within_budget"] for row in per_seed),
            "reached": sum(row["arms"][arm]["rounds_to_reach"] is not None for row in per_seed),
            "seeds": len(per_seed),
            "median_share_to_reach": _median_share([row["arms"][arm]["share_of_baseline"] for row in per_seed]),
        }
        for arm in ARMS
    }
    need, of = REACH_SEEDS
    met_on, n = arms["asha_tpe"]["met_on"], len(per_seed)

    def share(before: str, after: str) -> dict[str, Any]:
        return {
            "from": before,
            "to": after,
            "met_on": [arms[before]["met_on"], arms[after]["met_on"]],
            "median_share_to_reach": [arms[before]["median_share_to_reach"], arms[after]["median_share_to_reach"]],
        }

    return {
        "text": f"ASHA + TPE reaches random search's final best within {REACH_POINTS} points using at most a third of its trial-rounds "
        f"on at least {need} of {of} seeds",
        "points": REACH_POINTS,
        "compute": REACH_COMPUTE,
        "per_seed": per_seed,
        "arms": arms,
        "goal": {
            "met_on": met_on,
            "seeds": n,
            "needs": [need, of],
            "met": None if n < of else met_on >= need * n / of,  # None: too few seeds to decide
            "line": f"met on {met_on} of {n} seeds (needs {need} of {of})",
        },
        "searcher_share": share("random_asha", "asha_tpe"),
        "scheduler_share": share("random_fifo", "random_asha"),
    }


PLATEAU_ROUNDS = 4  # a trial's last rounds, where the curves of the quickstart have flattened
TOLERANCES = (0.25, 0.5, 0.75, 1.0)  # points: the reach goal's, and looser ones, to show how close each arm came


def _noise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How noisy the target is, from random search's trials trained to the end: the round-to-round spread of one
    trial's value on its plateau (the standard deviation of its last rounds' values, in points), and, per seed, how
    far random search's final best (the highest of all its trial-rounds) sits above the mean of its best trial's last
    rounds: the part of the target that is one lucky evaluation rather than a better configuration."""
    spreads, peaks = [], []
    for r in runs:
        if r["arm"] != BASELINE:
            continue
        a = r["analysis"]
        sign = 1 if a["best_mode"] == "max" else -1
        learned = [  # trained to the end, and not predicting one class on its plateau (a flat line at chance has no spread)
            t["curve"]
            for t in a.get("per_trial", [])
            if t.get("curve") and t["rounds_done"] == t["rounds_planned"] and len(t["curve"]) >= PLATEAU_ROUNDS
            and all(v is not None for v in t["curve"][-PLATEAU_ROUNDS:])
            and max((t.get("top_class_share_curve") or [0.0])[-PLATEAU_ROUNDS:], default=0.0) < SINGLE_CLASS_SHARE
        ]
        spreads += [100 * float(np.std(c[-PLATEAU_ROUNDS:], ddof=1)) for c in learned]
        if learned:
            best = max(learned, key=lambda c: sign * max(sign * v for v in c if v is not None))
            peaks.append({"seed": r["seed"], "points": 100 * sign * (a["best_value"] - float(np.mean(best[-PLATEAU_ROUNDS:])))})
    return {"plateau_rounds": PLATEAU_ROUNDS, "round_spread_points": summarize(spreads), "peak_over_plateau_points": summarize([p["points"] for p in peaks]), "per_seed": peaks}


def _tolerance(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm, on how many seeds the best so far came within each of TOLERANCES points of random search's final best
    after at most REACH_COMPUTE of its trial-rounds, and by the arm's own end."""
    by_seed, seeds = _complete_seeds(runs)
    out: dict[str, Any] = {"points": list(TOLERANCES), "seeds": len(seeds), "arms": {}}
    for arm in ARMS:
        rows = []
        for points in TOLERANCES:
            reached = [_rounds_to_reach(by_seed[(arm, seed)], by_seed[(BASELINE, seed)], points) for seed in seeds]
            rows.append({"points": points, "within_budget": sum(within for _, within in reached), "by_end": sum(n is not None for n, _ in reached)})
        out["arms"][arm] = rows
    return out


def _at(best: list[float | None], rounds: int) -> float | None:
    """The best so far after ``rounds`` trial-rounds; a sweep that had ended keeps its final best."""
    return best[min(rounds, len(best)) - 1] if rounds >= 1 and best else None


def _anytime(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm, the best so far (and its gap to each seed's random-search final best, in points) at each share of random
    search's median trial-rounds: median, min–max over seeds."""
    by_seed, seeds = _complete_seeds(runs)
    scale = summarize([by_seed[(BASELINE, s)]["trial_rounds"] for s in seeds])["median"] or 0
    arms = {}
    for arm in ARMS:
        rows = []
        curves = {s: best_so_far(by_seed[(arm, s)]["values_in_order"], by_seed[(arm, s)]["best_mode"]) for s in seeds}
        sign = {s: 1 if by_seed[(arm, s)]["best_mode"] == "max" else -1 for s in seeds}
        for fraction in FRACTIONS:
            rounds = math.floor(fraction * scale + TOLERANCE)
            values = {s: _at(curves[s], rounds) for s in seeds}
            gaps = [None if v is None else 100 * sign[s] * (v - by_seed[(BASELINE, s)]["best_value"]) for s, v in values.items()]
            rows.append({"fraction": fraction, "trial_rounds": rounds, "best": summarize(list(values.values())), "gap_points": summarize(gaps)})
        arms[arm] = {"curve": rows, "ended_at": summarize([ratio(by_seed[(arm, s)]["trial_rounds"], scale) for s in seeds])}
    return {"baseline_trial_rounds": scale, "fractions": FRACTIONS, "arms": arms}


def plot(path: Path, s: dict[str, Any]) -> str | None:
    """The anytime curves as a PNG (best so far; gap to random search's final best), when matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    anytime = s["anytime"]
    x = 100 * np.array(anytime["fractions"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for arm, a in anytime["arms"].items():
        for ax, key in zip(axes, ("best", "gap_points")):
            column = {q: np.array([row[key][q] for row in a["curve"]], dtype=float) for q in ("median", "min", "max")}
            (line,) = ax.plot(x, column["median"], marker=".", label=LABELS[arm])
            ax.fill_between(x, column["min"], column["max"], color=line.get_color(), alpha=0.15)
    axes[0].set_ylabel(f"best {s['metric']} so far")
    axes[1].set_ylabel("points from random search's final best")
    axes[1].axhline(-REACH_POINTS, color="grey", linestyle="--", linewidth=1)
    for ax in axes:
        ax.axvline(100 * REACH_COMPUTE, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"compute: % of random search's trial-rounds ({fmt(anytime['baseline_trial_rounds'], 0)})")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle(f"Best so far against compute: median and min–max over {len(s['reach']['per_seed'])} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _row(name: str, x: dict[str, Any]) -> str:
    return (
        f"| {name} | {fmt_stat(x['best_value'], 4)} | {fmt_stat(x['trial_rounds'], 0)} | {fmt_stat(x['trial_epochs'], 1)} "
        f"| {fmt_stat(x['wall_s'], 0, ' s')} | {fmt_stat(x['stopped'], 0)} | {fmt_stat(x['converged'], 0)} |"
    )


def markdown(p: dict[str, Any]) -> str:
    s, m, runs = p["summary"], p["machine"], p["runs"]
    a = s["arms"]["asha_tpe"]
    seeds = len({r["seed"] for r in runs})
    trials = fmt(a["trials"]["median"], 0)
    where = m["gpu"] or f"{m['cpus_usable']} CPU cores"
    g = s["goal"]
    lines = [
        f"**Search efficiency**: {trials} trials per sweep, {'--quick sizes' if p['quick'] else 'the quickstart spec'}, "
        f"{where}; median (min–max) over searcher seeds 0–{seeds - 1}"
        + (f" (saved after {seeds} of the {p['seeds_planned']} planned seeds)" if p.get("seeds_planned", seeds) > seeds else "")
        + ":",
        "",
        f"| search | best {s['metric']} | trial-rounds | trial-epochs | wall | stopped by ASHA | ended on patience |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(_row(LABELS[arm], s["arms"][arm]) for arm in ARMS),
        f"| **ASHA+TPE vs random** | **{s['best_diff_points_of_medians']:+.2f} points** | **{fmt(100 * s['compute_ratio_of_medians'], 0)}% of the compute** | "
        f"| {fmt(100 * s['wall_ratio_of_medians'], 0) if s['wall_ratio_of_medians'] else 'n/a'}% of the wall time | | |",
        "",
        f"Goal: within {GOAL_POINTS} points with at most {GOAL_COMPUTE:.0%} of the compute: accuracy {_met(g['within_points'])}, "
        f"compute {_met(g['within_compute'])}. Per seed (compute ratio, Δ points): "
        + ", ".join(f"seed {q['seed']}: {fmt(100 * q['compute_ratio'], 0)}%, {q['best_diff_points']:+.2f}" for q in s["paired"])
        + ".",
        "",
        *_reach_lines(s),
        "",
        *_anytime_lines(s),
        "",
        *_noise_lines(s),
        *([f"\nThe curves, with the spread over seeds: `{p['plot']}` beside this table."] if p.get("plot") else []),
        *measured(p, ("ray", "optuna")),
    ]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "not reached" if x is None else f"{fmt(100 * x, 0)} %"


def _reach_lines(s: dict[str, Any]) -> list[str]:
    r = s["reach"]
    g = r["goal"]
    lines = [
        f"**Anytime, per seed**: the trial-rounds (counted in the order the rounds ended) until the best {s['metric']} so far came within "
        f"{r['points']} points of random search's final best; ✓: within a third of random search's trial-rounds.",
        "",
        "| seed | random search's final best | its trial-rounds (a third) | " + " | ".join(LABELS[arm] for arm in ARMS) + " |",
        "|---:|---:|---:|" + "---:|" * len(ARMS),
    ]
    for row in r["per_seed"]:
        cells = [row["arms"][arm] for arm in ARMS]
        lines.append(
            f"| {row['seed']} | {row['target']:.4f} | {row['baseline_trial_rounds']} ({fmt(row['budget_trial_rounds'], 0)}) | "
            + " | ".join("not reached" if c["rounds_to_reach"] is None else f"{c['rounds_to_reach']}{' ✓' if c['within_budget'] else ''}" for c in cells)
            + " |"
        )
    verdict = "not decided: too few seeds" if g["met"] is None else _met(g["met"])
    arms = r["arms"]

    def share(x: dict[str, Any]) -> str:
        (before, after), (m0, m1) = x["met_on"], x["median_share_to_reach"]
        return (
            f"{LABELS[x['from']]} → {LABELS[x['to']]}: met on {before} → {after} of {g['seeds']} seeds; median trial-rounds to reach it, "
            f"as a share of random search's: {_pct(m0)} → {_pct(m1)}"
        )

    lines += [
        "",
        f"Goal ({r['text']}): {g['line']}: **{verdict}**. "
        + "; ".join(f"{LABELS[arm]}: met on {arms[arm]['met_on']} of {arms[arm]['seeds']}" for arm in ARMS if arm != "asha_tpe")
        + ".",
        f"Searcher's share ({share(r['searcher_share'])}). Scheduler's share ({share(r['scheduler_share'])}).",
    ]
    return lines


def _anytime_lines(s: dict[str, Any]) -> list[str]:
    a = s["anytime"]
    shown = [i for i, f in enumerate(a["fractions"]) if any(abs(f - t) < TOLERANCE for t in TABLE_FRACTIONS)]
    lines = [
        f"**Best {s['metric']} so far against compute** (share of random search's median {fmt(a['baseline_trial_rounds'], 0)} trial-rounds), "
        "median (min–max) over seeds; a sweep that has ended keeps its final best (median end: "
        + ", ".join(f"{LABELS[arm]} {_pct(x['ended_at']['median'])}" for arm, x in a["arms"].items())
        + "):",
        "",
        "| compute | trial-rounds | " + " | ".join(LABELS[arm] for arm in ARMS) + " |",
        "|---:|---:|" + "---:|" * len(ARMS),
    ]
    for i in shown:
        f = a["fractions"][i]
        label = "a third" if abs(f - REACH_COMPUTE) < TOLERANCE else f"{fmt(100 * f, 0)} %"
        lines.append(f"| {label} | {a['arms'][BASELINE]['curve'][i]['trial_rounds']} | " + " | ".join(fmt_stat(a["arms"][arm]["curve"][i]["best"], 4) for arm in ARMS) + " |")
    return lines


def _noise_lines(s: dict[str, Any]) -> list[str]:
    t, n = s["tolerance"], s["noise"]
    rows = [
        f"**How close, at other tolerances**: seeds (of {t['seeds']}) on which each arm's best so far came within so many points of "
        "random search's final best, within a third of its trial-rounds / by the arm's own end:",
        "",
        "| points | " + " | ".join(LABELS[arm] for arm in ARMS) + " |",
        "|---:|" + "---:|" * len(ARMS),
    ]
    for i, points in enumerate(t["points"]):
        rows.append(f"| {points} | " + " | ".join(f"{t['arms'][arm][i]['within_budget']} / {t['arms'][arm][i]['by_end']}" for arm in ARMS) + " |")
    spread, peak = n["round_spread_points"], n["peak_over_plateau_points"]
    if spread["n"]:
        rows += [
            "",
            f"**Noise in the target**: one trial's {s['metric']} moves by a standard deviation of {fmt_stat(spread, 2)} points between its last "
            f"{n['plateau_rounds']} rounds (median over {spread['n']} trials of random search trained to the end), and random search's final "
            f"best sits {fmt_stat(peak, 2)} points above the mean of its best trial's last {n['plateau_rounds']} rounds: part of the "
            "target is the highest of many noisy evaluations, not a better configuration.",
        ]
    return rows

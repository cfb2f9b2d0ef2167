"""ASHA replayed on learning curves: what each ASHA setting would have cost, and found, on trials that
were all trained to the end (the random-search sweeps of the ``search`` benchmark).

Every trial of a sweep without early stopping has its metric at every round. Draw ``trials`` of them
(without replacement, many times), feed them in that order to an event simulation of Ray Tune's
``ASHAScheduler`` with ``slots`` trials at a time, one time unit per round, and apply its rule: when a
trial reaches a rung (``grace * rf**k`` rounds, below the maximum) it stops if its value is worse than
the ``1 - 1/rf`` quantile of the values that trials reached at that rung before it (the first trial at
a rung always goes on). Compute is the rounds run against ``trials x max_rounds``; quality is the best
value seen against the best value of the same trials trained to the end.

Slot use is the rounds run against ``slots x`` the schedule's length in rounds: the share of the slots
that the schedule itself can keep busy, before any start-up, logging or checkpoint cost. It is what
the sweep's busy fraction would be with none of those costs; the last trials, left running alone once
every trial has started, are what it loses.

The sweep's own rules are replayed too: ``stop_single_class`` (a trial predicting one class for at
least 99 % of the validation set is stopped at a rung even when it is the first there) and
``patience`` (a trial past the last rung stops once its metric has not improved for that many rounds).
One alternative is replayed beside them, not built into the sweep: ``defer`` (a trial still predicting one
class at the first rung goes on to the second rung, where both rules apply), which keeps the slow starters
(configurations that leave chance only in their second epoch) at the price of the dead ones' extra rounds.

The configurations are random search's, not TPE's, so this isolates the scheduler. It uses no timing:
every round counts as one time unit.
"""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import GOAL_BUSY, GOAL_COMPUTE, GOAL_POINTS, BenchError, command_line, fmt, machine_info, write_outputs
from hpo.core.spec import AshaScheduler
from trainables.report import TOP_CLASS_SHARE as SHARE_KEY
from trainables.report import RoundReport, ends_on_patience

# (grace_period, reduction_factor, stop_single_class, patience, defer); Ray's ASHA alone first, then our rules.
SETTINGS = [
    (2, 3, False, None, False), (2, 2, False, None, False), (2, 4, False, None, False), (3, 3, False, None, False),
    (4, 3, False, None, False), (1, 3, False, None, False), (2, 3, True, None, False), (2, 2, True, None, False),
    (2, 3, False, 3, False), (2, 2, False, 3, False), (2, 3, True, 3, False), (2, 2, True, 3, False),
    (2, 2, True, 2, False), (2, 2, True, 4, False), (2, 2, True, 3, True), (2, 2, True, 2, True),
]


@dataclass(frozen=True)
class Curve:
    values: list[float]  # the metric, round by round
    shares: list[float] | None  # val_top_class_share, round by round (None: not recorded)


def load_curves(sources: list[Path]) -> tuple[list[Curve], dict[str, Any]]:
    """Full-length learning curves from sweep folders, or from a ``search.json`` (its random-search runs)."""
    from hpo.core.results import load_sweep

    curves: list[Curve] = []
    info: dict[str, Any] = {}
    for src in sources:
        if not src.exists():
            raise BenchError(f"{src} does not exist: give search.json (benchmarks/results/) or sweep folders kept with --keep")
        if src.suffix == ".json":
            runs = [r for r in json.loads(src.read_text())["runs"] if r["arm"] == "random_fifo"]
            rows = [t for r in runs for t in r["analysis"]["per_trial"]]
            if any("curve" not in t for t in rows):
                raise BenchError(f"{src} has no learning curves (written by an older version): replay the kept sweep folders instead")
            full = [Curve(t["curve"], t.get("top_class_share_curve")) for t in rows if t["rounds_done"] == t["rounds_planned"]]
            info.setdefault("metric", runs[0]["analysis"]["best_metric"] if runs else None)
        else:
            sweep = load_sweep(str(src))
            spec = sweep.spec
            if spec.scheduler.type != "fifo" or spec.scheduler.patience is not None:
                raise BenchError(f"{src} is a sweep with early stopping; replay needs every trial trained to the end")
            full = [
                Curve([r[spec.metric] for r in t.rounds], [r[SHARE_KEY] for r in t.rounds] if all(SHARE_KEY in r for r in t.rounds) else None)
                for t in sweep.trials
                if t.rounds_done == t.rounds_planned
            ]
            info.setdefault("metric", spec.metric)
            info.setdefault("mode", spec.mode)
            info.setdefault("max_rounds", spec.scheduler.max_rounds)
            info.setdefault("slots", spec.budget.max_concurrent)
            info.setdefault("trials", spec.budget.num_trials)
        curves.extend(full)
    lengths = {len(c.values) for c in curves}
    if len(lengths) != 1:
        raise BenchError(f"the curves differ in length ({sorted(lengths)}); replay sweeps of one spec")
    return curves, info


def rungs(grace: int, rf: int, max_rounds: int) -> list[int]:
    return AshaScheduler(max_rounds=max_rounds, grace_period=grace, reduction_factor=rf).rungs()


def simulate(
    curves: list[Curve],
    grace: int,
    rf: int,
    slots: int,
    sign: float,
    single_class: bool = False,
    patience: int | None = None,
    defer: bool = False,
) -> tuple[int, float, float]:
    """Rounds run, best value found and the schedule's length (in rounds) of asynchronous ASHA over
    ``curves`` taken in order. ``sign`` is +1 to maximise the metric, -1 to minimise it."""
    max_rounds = len(curves[0].values)
    spec = AshaScheduler(max_rounds=max_rounds, grace_period=grace, reduction_factor=rf, patience=patience)
    recorded: dict[int, list[float]] = {m: [] for m in spec.rungs()}
    first_rung = spec.rungs()[0] if defer and len(spec.rungs()) > 1 else None
    waiting = list(range(len(curves)))
    running: list[tuple[float, int, int]] = []  # (time the round ends, trial, round)
    done = [0] * len(curves)
    own_best = [(-np.inf, 0)] * len(curves)  # each trial's best value and its round
    best = end = -np.inf
    for slot in range(min(slots, len(waiting))):
        heapq.heappush(running, (1.0 + 1e-6 * slot, waiting.pop(0), 1))
    while running:
        now, trial, rnd = heapq.heappop(running)
        end = max(end, now)
        value = sign * curves[trial].values[rnd - 1]
        done[trial], best = rnd, max(best, value)
        if value > own_best[trial][0]:
            own_best[trial] = (value, rnd)
        stop = rnd >= max_rounds
        if rnd in recorded:
            seen = recorded[rnd]
            shares = curves[trial].shares
            one_class = single_class and shares is not None and RoundReport(rnd, max_rounds, {SHARE_KEY: shares[rnd - 1]}).one_class
            if rnd != first_rung or not one_class:  # deferred: judged at the next rung instead
                if seen and value < np.nanpercentile(seen, 100 * (1 - 1 / rf)):
                    stop = True
                stop = stop or one_class
            seen.append(value)
        if ends_on_patience(rnd, own_best[trial][1], max_rounds, patience, spec.patience_from()):
            stop = True
        if not stop:
            heapq.heappush(running, (now + 1.0, trial, rnd + 1))
        elif waiting:
            heapq.heappush(running, (now + 1.0, waiting.pop(0), 1))
    return sum(done), sign * best, round(end)


def replay(curves: list[Curve], trials: int, slots: int, sign: float, draws: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    samples = [rng.sample(curves, trials) for _ in range(draws)]
    max_rounds = len(curves[0].values)
    have_shares = all(c.shares is not None for c in curves)
    out = []
    for grace, rf, single_class, patience, defer in SETTINGS:
        if single_class and not have_shares:
            continue  # curves recorded before val_top_class_share existed
        compute, diff, use = [], [], []
        for sample in samples:
            rounds, best, span = simulate(sample, grace, rf, slots, sign, single_class, patience, defer)
            full_best = sign * max(sign * v for c in sample for v in c.values)
            compute.append(rounds / (trials * max_rounds))
            diff.append(100 * sign * (best - full_best))  # points; negative = worse than training all
            use.append(rounds / (slots * span))
        search_ok = [(d >= -GOAL_POINTS) and (c <= GOAL_COMPUTE) for d, c in zip(diff, compute)]
        out.append(
            {
                "grace_period": grace,
                "reduction_factor": rf,
                "stop_single_class": single_class,
                "patience": patience,
                "defer_first_rung": defer,
                "rungs": rungs(grace, rf, max_rounds),
                "compute_median": float(np.median(compute)),
                "compute_q1_q3": [float(np.percentile(compute, 25)), float(np.percentile(compute, 75))],
                "diff_points_median": float(np.median(diff)),
                "diff_points_mean": float(np.mean(diff)),
                "diff_points_p10": float(np.percentile(diff, 10)),
                "share_within_0_5_points_and_40pct": float(np.mean(search_ok)),
                "slot_use_median": float(np.median(use)),
                "slot_use_q1_q3": [float(np.percentile(use, 25)), float(np.percentile(use, 75))],
                "share_slot_use_0_90": float(np.mean([u >= GOAL_BUSY for u in use])),
                "share_all_three": float(np.mean([ok and u >= GOAL_BUSY for ok, u in zip(search_ok, use)])),
            }
        )
    return out


def run(out: Path, sources: list[Path], draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    curves, info = load_curves(sources)
    if not curves:
        raise BenchError("no trial trained to the end in the given sources")
    trials = min(info.get("trials") or 10, len(curves))
    slots = info.get("slots") or 2
    sign = -1.0 if info.get("mode") == "min" or info.get("metric") == "val_loss" else 1.0
    print(f"replay: {len(curves)} curves of {len(curves[0].values)} rounds, {draws} draws of {trials} trials, {slots} at a time", flush=True)
    payload = {
        "benchmark": "replay",
        "machine": machine_info(),
        "sources": [str(s) for s in sources],
        "metric": info.get("metric"),
        "curves": len(curves),
        "max_rounds": len(curves[0].values),
        "trials": trials,
        "slots": slots,
        "draws": draws,
        "settings": replay(curves, trials, slots, sign, draws, seed),
        "command": command_line(),
    }
    write_outputs(out, "replay", payload, markdown(payload))
    return payload


def _one_class(s: dict[str, Any]) -> str:
    if not s.get("stop_single_class"):
        return "no"
    return "deferred: goes on past the 1st rung" if s.get("defer_first_rung") else "yes"


def markdown(p: dict[str, Any]) -> str:
    lines = [
        f"**ASHA replayed** on {p['curves']} learning curves of random search trained to the end ({p['max_rounds']} rounds), "
        f"{p['draws']} draws of {p['trials']} trials, {p['slots']} at a time, Ray's stopping rule (and the sweep's own rules where marked). Compute: share of the "
        f"rounds of training every trial to the end; Δ: best {p['metric']} found minus the best of the same trials trained to the end. "
        f"Slot use: rounds run / ({p['slots']} slots × the schedule's length in rounds), the busy fraction the schedule allows before any start-up or logging cost "
        "(training every trial to the end gives 1.00).",
        "",
        f"| grace, reduction factor (rungs) | one-class stop | patience | compute, median (q1–q3) | Δ points, median / mean / 10th pct | draws meeting ≤ {GOAL_COMPUTE:.0%} and ≥ −{GOAL_POINTS} | slot use, median (q1–q3) | draws with slot use ≥ {GOAL_BUSY:.2f} | draws meeting all three |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in p["settings"]:
        q1, q3 = s["compute_q1_q3"]
        u1, u3 = s["slot_use_q1_q3"]
        lines.append(
            f"| {s['grace_period']}, {s['reduction_factor']} ({', '.join(map(str, s['rungs']))}) | {_one_class(s)} "
            f"| {s.get('patience') or '-'} | {fmt(100 * s['compute_median'], 0)} % "
            f"({fmt(100 * q1, 0)}–{fmt(100 * q3, 0)}) | {s['diff_points_median']:+.2f} / {s['diff_points_mean']:+.2f} / {s['diff_points_p10']:+.2f} "
            f"| {fmt(100 * s['share_within_0_5_points_and_40pct'], 0)} % | {s['slot_use_median']:.2f} ({u1:.2f}–{u3:.2f}) "
            f"| {fmt(100 * s['share_slot_use_0_90'], 0)} % | {fmt(100 * s['share_all_three'], 0)} % |"
        )
    lines += ["", f"```bash\n{p['command']}\n```"]
    return "\n".join(lines)

"""What a sweep's size costs: the same tiny trials at 16, 64 and 256 trials, hpo against bare Ray Tune.

Both sides run the product's trainable (``trainables.trial.run_trial`` through ``tune.with_parameters``,
as the driver passes it to Tune) on the same data, 2 trials at a time on reused workers, each trial one
round of a 1-layer, 16-wide offline preset on 160 reviews, with a checkpoint per round:

* hpo: ``run_sweep`` on the quickstart spec shrunk so (TPE, ASHA, W&B offline, the janitor, the console);
* bare: ``tune.Tuner`` with Tune's defaults and no callbacks, the spec's space sampled at random;
* bare, keep 1: the same with the sweep's ``CheckpointConfig`` (``checkpoints.num_to_keep: 1``), under
  which Tune saves its whole experiment state after each trial checkpoint, as it does in the sweep.

in-trial seconds = Σ over a trial's rounds of (train_seconds + val_seconds), as the trial reports them.
wall = Tune's run: from building the ``Tuner`` to ``Tuner.fit`` returning (data preparation and the
start of Ray left out; the first workers' cold start is in it, on both sides).
overhead per trial = (wall × slots − Σ in-trial seconds) / trials. It holds the fixed costs too (the first
workers' start, the end of the run), spread over the trials, so it falls as sweeps grow even when each trial
costs more; what each added trial costs is the marginal overhead between two sizes: the difference of
(wall × slots − Σ in-trial seconds) over the difference of trials.
start interval = seconds between consecutive trials entering the trial function, median over the first
and over the last quarter of the trials.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import QUICKSTART, REPO, BenchError, command_line, fmt, machine_info, merged, ratio, write_outputs
from benchmarks._sweeps import SweepRunner

SIZES = (16, 64, 256)
QUICK_SIZES = (4, 8)
BARE_WORKER = "_bare-worker"  # the hidden command of run.py that runs one bare Tune run
SLOTS = 2
RUNS = ("hpo", "bare", "bare_keep")
LABELS = {"hpo": "hpo", "bare": "bare", "bare_keep": "bare, keep 1"}
# The quickstart, shrunk until the driver's work per trial is not lost in the trial's own.
TINY = {
    "model": {"offline_preset": {"layers": 1, "dim": 16, "heads": 2, "hidden_dim": 32, "seed": 0}},
    "data": {"train_size": 200, "test_size": 50},  # 160 train and 40 validation reviews
    "training": {"epochs": 1, "rounds_per_epoch": 1, "max_length": 64},
    "scheduler": {"type": "asha", "max_rounds": 1, "grace_period": 1},
    "budget": {"max_concurrent": SLOTS},
}
STATUS_REPS = 3


def _overrides(trials: int) -> dict[str, Any]:
    return merged(TINY, {"budget": {"num_trials": trials}})


# ------------------------------------------------------------------------------- the bare child
def _tune_space(space: dict[str, Any]) -> dict[str, Any]:
    """The spec's search space as Tune's own random distributions."""
    from ray import tune

    from hpo.core.spec import Choice, IntRange, LogUniform, Uniform

    out: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, LogUniform):
            out[name] = tune.loguniform(p.low, p.high)
        elif isinstance(p, Uniform):
            out[name] = tune.uniform(p.low, p.high)
        elif isinstance(p, IntRange):
            # both ends included: qrandint's quantization includes its upper bound, lograndint's excludes it
            out[name] = tune.lograndint(p.low, p.high + 1) if p.log else tune.qrandint(p.low, p.high, p.step)
        elif isinstance(p, Choice):
            out[name] = tune.choice(list(p.values))
    return out


def bare_worker(job_file: str) -> int:
    """Child side: the spec's trainable and data under a plain ``tune.Tuner``, no callbacks, timed (with the
    sweep's checkpoint settings when the job says ``keep``)."""
    import ray
    from ray import tune

    from benchmarks._common import with_overrides
    from hpo.core.spec import load_spec
    from hpo.sweep.prepare import prepare
    from hpo.tune.run import init_ray, trainable

    job = json.loads(Path(job_file).read_text())
    spec = with_overrides(load_spec(job["spec"], {"name": job["name"], "storage": job["storage"]}), job["overrides"])
    prepared = prepare(spec, print)
    init_ray(None)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # as the driver: no progress output
    t0 = time.perf_counter()
    tuner = tune.Tuner(
        trainable(spec, prepared.data, prepared.source),  # the trial function and resources the driver passes
        param_space=_tune_space(spec.search_space),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            num_samples=spec.budget.num_trials,
            max_concurrent_trials=spec.budget.max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=spec.storage,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=spec.checkpoints.num_to_keep, checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode
            )
            if job["keep"]
            else None,
        ),
    )
    results = tuner.fit()
    wall = time.perf_counter() - t0
    ray.shutdown()
    out = {"path": str(Path(spec.storage, spec.name)), "tune_s": wall, "n_trials": len(results), "n_errored": sum(r.error is not None for r in results)}
    Path(job["result"]).write_text(json.dumps(out, indent=2))
    return 0


def _run_bare(storage: Path, name: str, overrides: dict[str, Any], keep: bool) -> dict[str, Any]:
    job = {"spec": QUICKSTART, "name": name, "storage": str(storage), "overrides": overrides, "keep": keep, "result": str(storage / f"{name}.result.json")}
    job_file = storage / f"{name}.job.json"
    job_file.write_text(json.dumps(job))
    log = storage / f"{name}.log"
    print(f"  {name}: running in a child process (log: {log})", flush=True)
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), BARE_WORKER, str(job_file)], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise BenchError(f"bare Tune run {name} failed (exit {proc.returncode}); last lines of {log}:\n{tail}")
    result = json.loads(Path(job["result"]).read_text())
    result.update(name=name, log=str(log))
    return result


# ------------------------------------------------------------------------------------- analysis
def _trials(experiment: str) -> list[dict[str, Any]]:
    """Per trial folder of a Tune experiment (hpo's or bare), what the trial reported about itself."""
    from hpo.core.results import parse_results

    rows = []
    for sub in sorted(Path(experiment).iterdir()):
        results = sub / "result.json"
        if not results.is_file():
            continue
        rounds = [r for r in parse_results(results.read_text()) if "trial_entered_unix" in r or "train_seconds" in r]
        if rounds:
            rows.append({
                "entered_unix": rounds[0].get("trial_entered_unix"),
                "startup_s": rounds[0].get("startup_seconds"),
                "in_trial_s": sum(r.get("train_seconds", 0.0) + r.get("val_seconds", 0.0) for r in rounds),
            })
    return sorted(rows, key=lambda r: r["entered_unix"] or 0.0)


def _quarters(values: list[float]) -> tuple[float | None, float | None]:
    """Median over the first and over the last quarter of ``values`` (at least one value each)."""
    if not values:
        return None, None
    q = max(1, len(values) // 4)
    return statistics.median(values[:q]), statistics.median(values[-q:])


def analyze(experiment: str, wall_s: float, slots: int) -> dict[str, Any]:
    rows = _trials(experiment)
    entered = [r["entered_unix"] for r in rows if r["entered_unix"] is not None]
    gaps = [b - a for a, b in zip(entered, entered[1:])]
    in_trial = [r["in_trial_s"] for r in rows]
    n = len(rows)
    busy = sum(in_trial)
    early, late = _quarters(gaps)
    in_early, in_late = _quarters(in_trial)
    startup_early, startup_late = _quarters([r["startup_s"] for r in rows if r["startup_s"] is not None])
    return {
        "trials": n,
        "wall_s": wall_s,
        "in_trial_s": busy,
        "overhead_per_trial_s": (wall_s * slots - busy) / n if n else None,
        "start_interval_early_s": early,
        "start_interval_late_s": late,
        "in_trial_early_s": in_early,
        "in_trial_late_s": in_late,
        "startup_early_s": startup_early,
        "startup_late_s": startup_late,
    }


def time_status(path: str, reps: int = STATUS_REPS) -> dict[str, Any]:
    """Seconds ``hpo status PATH`` takes as a user runs it (a fresh process each time)."""
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "hpo.cli", "status", path], cwd=REPO, capture_output=True, text=True)
        seconds.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise BenchError(f"hpo status {path} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {"median_s": statistics.median(seconds), "values_s": seconds}


# ------------------------------------------------------------------------------------------- run
def run(out: Path, quick: bool, runner: SweepRunner, sizes: list[int] | None = None) -> dict[str, Any]:
    machine = machine_info()
    sizes = sorted(sizes or (QUICK_SIZES if quick else SIZES))
    print(f"scale: {', '.join(map(str, sizes))} trials, {SLOTS} at a time, hpo and bare Ray Tune, each in a fresh process", flush=True)
    rows = []
    for n in sizes:
        row: dict[str, Any] = {"trials": n}
        for keep in (False, True):
            bare = _run_bare(runner.storage, f"scale-bare{'-keep' if keep else ''}-{n}", _overrides(n), keep)
            b = analyze(bare["path"], bare["tune_s"], SLOTS)
            row["bare_keep" if keep else "bare"] = {**b, "path": bare["path"], "errored": bare["n_errored"]}
            print(f"  {LABELS['bare_keep' if keep else 'bare']} {n}: {b['wall_s']:.0f}s, overhead {b['overhead_per_trial_s']:.2f} s/trial", flush=True)
        hpo = runner.run(f"scale-hpo-{n}", _overrides(n))
        h = analyze(hpo["path"], hpo["phases"]["tune_s"], SLOTS)
        row["hpo"] = {**h, "run_sweep_wall_s": hpo["wall_s"], "path": hpo["path"], "errored": hpo["n_errored"]}
        print(f"  hpo {n}: {h['wall_s']:.0f}s, overhead {h['overhead_per_trial_s']:.2f} s/trial", flush=True)
        rows.append(row)
    status = time_status(rows[-1]["hpo"]["path"])
    print(f"  hpo status on {sizes[-1]} trials: {status['median_s']:.2f}s (median of {STATUS_REPS})", flush=True)
    payload = {
        "benchmark": "scale",
        "machine": machine,
        "quick": quick,
        "sizes": sizes,
        "slots": SLOTS,
        "overrides": TINY,
        "rows": rows,
        "status": {"trials": sizes[-1], **status},
        "summary": _summary(rows),
        "command": command_line(),
    }
    write_outputs(out, "scale-quick" if quick else "scale", payload, markdown(payload))
    return payload


def _marginals(rows: list[dict[str, Any]]) -> None:
    """Each run's marginal overhead per added trial against the size before (None for the first)."""
    for run in RUNS:
        previous = None
        for r in rows:
            d = r[run]
            d["overhead_s"] = d["wall_s"] * SLOTS - d["in_trial_s"]
            d["marginal_overhead_per_trial_s"] = None if previous is None else (d["overhead_s"] - previous["overhead_s"]) / (d["trials"] - previous["trials"])
            previous = d


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    _marginals(rows)
    first, last = rows[0], rows[-1]
    return {
        **{f"{run}_overhead_ratio_largest_vs_smallest": ratio(last[run]["overhead_per_trial_s"], first[run]["overhead_per_trial_s"]) for run in RUNS},
        **{f"{run}_marginal_ratio_last_vs_first": ratio(last[run]["marginal_overhead_per_trial_s"], rows[1][run]["marginal_overhead_per_trial_s"]) if len(rows) > 2 else None for run in RUNS},
        "hpo_minus_bare_s": {r["trials"]: r["hpo"]["overhead_per_trial_s"] - r["bare"]["overhead_per_trial_s"] for r in rows},
    }


def markdown(p: dict[str, Any]) -> str:
    m, rows, s = p["machine"], p["rows"], p["summary"]
    where = m["gpu"] or f"{m['cpus_usable']} CPU cores"

    def arrow(d: dict[str, Any], key: str, digits: int = 2) -> str:
        return f"{fmt(d[f'{key}_early_s'], digits)} → {fmt(d[f'{key}_late_s'], digits)}"

    lines = [
        f"**Scale**: one-round trials of a 1-layer, 16-wide preset on 160 reviews, {p['slots']} at a time, {where}; "
        "hpo = `run_sweep` (TPE, ASHA, W&B offline), bare = `tune.Tuner` with the same trainable and data and no callbacks "
        "(Tune's default checkpoint settings, or the sweep's `num_to_keep: 1`). Overhead per trial = (wall × slots − Σ in-trial s) / trials; "
        "marginal = the same over the trials added since the size above; early → late: first and last quarter of the trials.",
        "",
        "| trials | run | wall (s) | overhead per trial (s) | vs the smallest sweep | hpo − this run (s/trial) | marginal overhead per added trial (s) | start interval, early → late (s) | in-trial s per trial, early → late |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for run in RUNS:
            d = r[run]
            strong = "**" if run == "hpo" else ""
            gap = "" if run == "hpo" else f"{'**' if run == 'bare' else ''}{fmt(r['hpo']['overhead_per_trial_s'] - d['overhead_per_trial_s'], 2)}{'**' if run == 'bare' else ''}"
            lines.append(
                f"| {r['trials']} | {LABELS[run]} | {fmt(d['wall_s'], 0)} | {strong}{fmt(d['overhead_per_trial_s'], 2)}{strong} | "
                f"{fmt(ratio(d['overhead_per_trial_s'], rows[0][run]['overhead_per_trial_s']), 2)}x | {gap} | {fmt(d['marginal_overhead_per_trial_s'], 2)} | "
                f"{arrow(d, 'start_interval')} | {arrow(d, 'in_trial')} |"
            )
    st = p["status"]
    lines += [
        "",
        f"`hpo status` on the {st['trials']}-trial sweep: **{fmt(st['median_s'], 2)} s** (median of {len(st['values_s'])}, a fresh process each). "
        f"Overhead per trial at {rows[-1]['trials']} trials is {fmt(s['hpo_overhead_ratio_largest_vs_smallest'], 2)}x that at {rows[0]['trials']} "
        f"(bare: {fmt(s['bare_overhead_ratio_largest_vs_smallest'], 2)}x)"
        + (
            f"; an added trial costs {fmt(s['hpo_marginal_ratio_last_vs_first'], 2)}x as much from {rows[-2]['trials']} to {rows[-1]['trials']} trials "
            f"as from {rows[0]['trials']} to {rows[1]['trials']} (bare: {fmt(s['bare_marginal_ratio_last_vs_first'], 2)}x, "
            f"bare with keep 1: {fmt(s['bare_keep_marginal_ratio_last_vs_first'], 2)}x)."
            if s["hpo_marginal_ratio_last_vs_first"] is not None
            else "."
        ),
        "",
        f"Measured {m['date_utc']} (load average {fmt(m['load_avg_1m_at_start'], 1)} at the start) with ray {m['versions']['ray']}, optuna {m['versions']['optuna']}, wandb {m['versions']['wandb']}:",
        "",
        f"```bash\n{p['command']}\n```",
    ]
    return "\n".join(lines)

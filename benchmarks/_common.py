"""What every benchmark shares: machine facts, summary statistics, spec overrides, output files."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hpo.core.versions import git_state, package_versions
from trainables.report import improves

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = "search_spaces/quickstart.yaml"  # relative to REPO: its data paths are resolved from there


# The goals docs/performance.md states, in one place for every benchmark that checks them.
GOAL_POINTS = 0.5  # search: ASHA + TPE's best within this many points of random search's ...
GOAL_COMPUTE = 0.40  # ... with at most this share of its compute (trial-rounds)
GOAL_BUSY = 0.90  # sweep: share of the trial slots kept busy
# search, per seed on the anytime curve: ASHA + TPE's best so far within this many points of random search's final best ...
REACH_POINTS = 0.25
REACH_COMPUTE = 1 / 3  # ... after at most this share of random search's trial-rounds ...
REACH_SEEDS = (5, 6)  # ... on at least 5 of 6 searcher seeds


class BenchError(Exception):
    """A benchmark could not run; the CLI prints it as one line."""


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    """The facts a reader needs to compare two result files (taken when the benchmark starts)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        # The machine may be shared: a high load average explains a slow, noisy result.
        "load_avg_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch_threads_default": torch.get_num_threads(),
        "gpu": gpu,
        "cuda": torch.version.cuda if gpu else None,
                "platform": platform.platform(),
        "versions": package_versions(("torch", "transformers", "accelerate", "ray", "optuna", "wandb", "datasets")),
        "git": git_state(),
    }


def command_line() -> str:
    """The exact command that produced a result, as a reader would type it from the repo root."""
    script = Path(sys.argv[0]).resolve()
    shown = os.path.relpath(script, REPO) if script.is_relative_to(REPO) else str(script)
    return " ".join(shlex.quote(a) for a in ["python", shown, *sys.argv[1:]])


def summarize(values: list[float | None]) -> dict[str, Any]:
    """Median with min/max and the interquartile range; ``None`` values (not measured) are left out."""
    xs = np.array([v for v in values if v is not None], dtype=float)
    if xs.size == 0:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None, "values": []}
    q1, med, q3 = np.percentile(xs, [25, 50, 75])
    return {
        "n": int(xs.size),
        "median": float(med),
        "min": float(xs.min()),
        "max": float(xs.max()),
        "q1": float(q1),
        "q3": float(q3),
        "values": [float(x) for x in xs],
    }


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def fmt_stat(stat: dict[str, Any], digits: int = 1, unit: str = "") -> str:
    """``median (min–max)``, or just the value when there was one measurement."""
    if not stat or stat.get("median") is None:
        return "n/a"
    if stat["n"] == 1 or stat["min"] == stat["max"]:
        return fmt(stat["median"], digits, unit)
    return f"{fmt(stat['median'], digits, unit)} ({fmt(stat['min'], digits)}–{fmt(stat['max'], digits)})"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else a / b


def best_so_far(values: list[float | None], mode: str) -> list[float | None]:
    """The best value seen after each entry of ``values`` (None: not measured, and nothing seen yet)."""
    out, best = [], None
    for v in values:
        if v is not None and improves(v, best, mode):
            best = v
        out.append(best)
    return out


def first_within(values: list[float | None], target: float, points: float, mode: str) -> int | None:
    """How many entries of ``values`` up to and including the first within ``points`` points (hundredths) of
    ``target``, or better; None when none is. A difference of exactly ``points`` is within, not lost to float error."""
    slack = points / 100 + 1e-9
    for count, v in enumerate(values, 1):
        if v is not None and (v >= target - slack if mode == "max" else v <= target + slack):
            return count
    return None


def merged(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``new`` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for key, value in new.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def with_overrides(spec: Any, overrides: dict[str, Any]) -> Any:
    """The spec with nested fields replaced, e.g. ``{"data": {"train_size": 600}}``, validated again.

    The models are frozen; a dump, merge and re-parse (instead of ``model_copy(update=...)``) also
    runs the spec's validators, so a misspelt override fails here instead of being ignored.
    """
    from hpo.core.spec import SCHEDULERS, SEARCHERS, parse_spec

    base = spec.model_dump(mode="json")
    for section, registry in (("searcher", SEARCHERS), ("scheduler", SCHEDULERS)):
        new_type = overrides.get(section, {}).get("type")
        if new_type and new_type != base[section]["type"]:  # another class: keep the keys it has too
            base[section] = {k: v for k, v in base[section].items() if k in registry[new_type].model_fields}
    return parse_spec(merged(base, overrides), "benchmark overrides")


def measured(payload: dict[str, Any], packages: tuple[str, ...]) -> list[str]:
    """The lines that end a benchmark's table: when it was measured, with which versions, and the command."""
    versions = payload["machine"]["versions"]
    return ["", f"Measured {payload['machine']['date_utc']} with {', '.join(f'{name} {versions[name]}' for name in packages)}:", "", f"```bash\n{payload['command']}\n```"]


def write_outputs(out: Path, name: str, payload: dict[str, Any], markdown: str, quiet: bool = False) -> None:
    """``NAME.json`` (everything measured) and ``NAME.md`` (the table docs/performance.md quotes); the table is printed unless
    ``quiet`` (a benchmark saving what it has so far)."""
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "getloadavg"):
        payload["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(markdown + "\n")
    if quiet:
        return
    print()
    print(markdown)
    print(f"\n[wrote {out / (name + '.json')} and {name}.md]", flush=True)

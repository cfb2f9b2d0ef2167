"""Every benchmark at its smoke size, so none can rot: each runs the product's own code end to end and
writes its JSON and table. No figure is asserted (timings belong in the benchmarks, not in tests); what is
asserted is that each ran, measured both sides, and wrote what the docs quote."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow


def _bench(args: list[str], tmp_path, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "benchmarks/run.py", *args, "--out", str(tmp_path / "results")],
        cwd=REPO, env=cli_env(tmp_path), capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    return out


def _result(tmp_path, name: str) -> dict:
    assert (tmp_path / "results" / f"{name}.md").read_text().strip()
    return json.loads((tmp_path / "results" / f"{name}.json").read_text())


def test_throughput_search_sweep_and_replay_at_smoke_size(tmp_path):
    _bench(["all", "--quick", "--reps", "1", "--threads", "1"], tmp_path)
    throughput = _result(tmp_path, "throughput-quick")
    assert throughput["benchmark"] == "throughput" and throughput["machine"]["cpu_count"] >= 1
    search = _result(tmp_path, "search-quick")
    arms = {"asha_tpe", "random_asha", "random_fifo"}
    assert {r["arm"] for r in search["runs"]} == arms
    assert all(r["analysis"]["best_value"] is not None and r["analysis"]["trial_rounds"] == len(r["analysis"]["values_in_order"]) > 0 for r in search["runs"])
    summary = search["summary"]
    assert set(summary["arms"]) == arms and "compute_ratio_of_medians" in summary and set(summary["goal"]) >= {"within_points", "within_compute"}
    (seed,) = summary["reach"]["per_seed"]
    assert set(seed["arms"]) == arms and seed["arms"]["random_fifo"]["rounds_to_reach"] is not None  # random search reaches its own best
    assert summary["reach"]["goal"]["line"].startswith("met on ") and summary["reach"]["goal"]["met"] is None  # one seed: not decided
    assert set(summary["reach"]["searcher_share"]) == {"from", "to", "met_on", "median_share_to_reach"}
    assert set(summary["tolerance"]["arms"]) == arms and summary["noise"]["plateau_rounds"] >= 1
    assert set(summary["anytime"]["arms"]) == arms and all(len(a["curve"]) == len(summary["anytime"]["fractions"]) for a in summary["anytime"]["arms"].values())
    if importlib.util.find_spec("matplotlib"):  # the anytime curves as a PNG beside the JSON
        assert search["plot"] == "search-quick.png" and (tmp_path / "results" / "search-quick.png").stat().st_size > 0
    sweep = _result(tmp_path, "sweep-quick")
    assert sweep["runs"] and all(r["n_trials"] > 0 for r in sweep["runs"])
    _bench(["replay", "--from", str(tmp_path / "results" / "search-quick.json")], tmp_path)
    assert _result(tmp_path, "replay")["benchmark"] == "replay"


def test_scale_runs_hpo_and_bare_tune_on_the_same_trials(tmp_path):
    _bench(["scale", "--quick", "--trials", "2"], tmp_path)
    scale = _result(tmp_path, "scale-quick")
    assert scale["benchmark"] == "scale" and scale["sizes"] == [2]


def test_warm_start_runs_an_earlier_sweep_then_cold_and_warm_ones(tmp_path):
    _bench(["warm", "--quick"], tmp_path)
    warm = _result(tmp_path, "warm-quick")
    (run,) = warm["runs"]
    assert {"earlier", "cold", "warm"} <= set(run) and all(run[arm]["trial_rounds"] > 0 for arm in ("earlier", "cold", "warm"))
    assert run["earlier"]["rounds_to_reach"] is not None  # a sweep reaches its own best
    assert len(run["tried_first"]) == 1 and run["warm_ran_earlier_best"]  # 3 trials: the earlier best runs first
    assert set(warm["summary"]["arms"]) == {"earlier", "cold", "warm"} and "warm_over_cold_rounds_to_reach" in warm["summary"]

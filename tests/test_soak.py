"""The fault-injection soak (``benchmarks/soak.py``) at its smallest: one quick episode, whose sweep on a loopback
S3 server has its driver killed after its first rounds and, once resumed, the server's port closed for seconds, is
run to the end and checked from what it stored (both faults come early in the sweep, so a fast machine cannot finish
the sweep before they are injected); then the soak's checks, shown to catch a doubled round, a lost W&B run and a missing
checkpoint of the winner in a copy of that sweep."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import check_sweep, plan
from hpo.core.results import load_sweep
from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow

SEED = 24
KINDS = ("driver_kill", "s3_down")


@pytest.fixture(scope="module")
def soaked(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("soak")
    proc = subprocess.run(
        [sys.executable, "benchmarks/run.py", "soak", "--quick", "--episodes", "1", "--seed", str(SEED), "--kinds", *KINDS, "--keep", "--out", str(tmp / "results")],
        cwd=REPO, env=cli_env(tmp), capture_output=True, text=True, timeout=900,
    )
    kept = re.search(r"kept in (\S+)", proc.stdout)
    try:
        yield {"proc": proc, "kept": Path(kept.group(1)) if kept else None, "tmp": tmp}
    finally:
        if kept:
            shutil.rmtree(kept.group(1), ignore_errors=True)


def test_a_sweep_whose_storage_goes_down_and_whose_driver_is_killed_ends_whole(soaked):
    faults = plan(SEED, quick=True, kinds=KINDS)  # what this seed injects: a kill after 2 trial-rounds, an outage after 3
    assert [(f.kind, f.after_rounds) for f in faults] == [("driver_kill", 2), ("s3_down", 3)]
    proc = soaked["proc"]
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    result = json.loads((soaked["tmp"] / "results" / "soak-quick.json").read_text())
    assert result["faults"]["s3_down"] == 1 and result["faults"]["driver_kill"] == 1, result["faults"]
    episode = result["episodes"][0]
    assert [r["command"][0] for r in episode["runs"]] == ["sweep", "resume"] and episode["runs"][0]["killed"]
    assert result["violations"] == [] and episode["trial_rounds"] >= 8
    assert "driver_kill 1" in proc.stdout and "soak: 0 violation(s)" in proc.stdout


def test_the_checks_catch_a_doubled_round_a_lost_wandb_run_and_a_missing_checkpoint(soaked, tmp_path):
    assert soaked["kept"] is not None, soaked["proc"].stdout[-3000:]
    sweep_copy = tmp_path / "sweep"
    shutil.copytree(soaked["kept"] / "e0" / "copy", sweep_copy)
    found: list[str] = []
    check_sweep(str(sweep_copy), tmp_path / "read", found)
    assert found == []
    sweep = load_sweep(sweep_copy)
    winner, _, _ = sweep.winner()
    other = next(t for t in sweep.trials if t.trial_id != winner.trial_id)
    results = Path(other.folder.path, "result.json")
    results.write_text(results.read_text() + results.read_text().splitlines()[-1] + "\n")
    shutil.rmtree(Path(other.folder.path, "wandb"))
    for checkpoint in Path(winner.folder.path).glob("checkpoint_*"):
        shutil.rmtree(checkpoint)
    check_sweep(str(sweep_copy), tmp_path / "read-again", found)
    said = "\n".join(found)
    assert f"trial {other.trial_id}: stored rounds" in said and "not 1..n each once" in said, said
    assert "W&B: runs" in said, said
    assert f"winner {winner.trial_id}" in said and "no checkpoint" in said, said

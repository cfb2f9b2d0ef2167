"""Finalists over seeds on the tiny sweep: the best 2 configurations re-run with 2 new training seeds
each (one real Ray Tune run), the best mean retrained; shown by promote, status and the card; reused on a
rerun."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from hpo.analysis.finalists import Finalist, choose, collect, value_at
from hpo.core.results import TrialRecord
from hpo.core.storage import Location
from tests.conftest import run_cli


SLOW = 1800  # a promotion retrains (and runs finalists): minutes on a busy 2-core machine

@pytest.fixture(scope="module")
def promoted(tiny_promoted) -> dict:
    return tiny_promoted


def _finalist(rank: int, values: dict[int, float | None], seeds=(1, 2)) -> Finalist:
    trial = TrialRecord(f"t{rank}", f"t{rank}", Location.parse("/tmp"), {"learning_rate": rank / 1000}, "TERMINATED")
    return Finalist(rank, trial, 0.9, 3, list(seeds), dict(values))


def test_finalist_runs_keep_the_sweeps_rounds_without_early_stopping(tmp_path):
    from hpo.core.spec import FifoScheduler, parse_spec
    from hpo.promotion.finalists import without_early_stopping
    from tests.conftest import tiny_spec

    raw = tiny_spec(tmp_path / "runs")
    raw["scheduler"]["patience"] = 2
    spec = parse_spec(raw)
    fixed = without_early_stopping(spec)
    assert isinstance(fixed.scheduler, FifoScheduler) and fixed.scheduler.patience is None
    assert fixed.scheduler.max_rounds == spec.scheduler.max_rounds and fixed.trial_settings().patience is None
    assert fixed.model_copy(update={"scheduler": spec.scheduler}) == spec  # nothing else changes


def test_choose_the_best_mean_and_ties_go_to_the_better_rank():
    a, b, c = _finalist(1, {1: 0.80, 2: 0.70}), _finalist(2, {1: 0.76, 2: 0.77}), _finalist(3, {1: None, 2: 0.9})
    assert choose([a, b], "max") is b  # 0.765 beats the sweep winner's 0.75
    assert c.scores == [0.9] and choose([a, b, c], "max") is c  # a failed seed is left out of the mean
    assert choose([a, _finalist(2, {1: 0.75, 2: 0.75})], "max") is a  # tie: the better-ranked one
    assert choose([a, b], "min") is a  # val_loss
    assert b.mean == pytest.approx(0.765) and b.std == pytest.approx(0.0070711, abs=1e-6)


def test_a_run_of_the_same_config_and_seed_is_reused_at_any_earlier_round():
    config = {"learning_rate": 0.001, "seed": 1}
    curves = {json.dumps(config, sort_keys=True): {1: 0.6, 2: 0.7, 3: 0.72}}
    assert value_at(curves, config, 2) == (True, 0.7)
    assert value_at(curves, config, 4) == (False, None)  # not that far yet
    assert value_at(curves, {**config, "seed": 2}, 2) == (False, None)
    failed = {json.dumps(config, sort_keys=True): {1: 0.6, 2: None}}  # diverged at round 2
    assert value_at(failed, config, 3) == (True, None)
    f = _finalist(1, {})
    f.trial.params.update(learning_rate=0.001)
    f.rounds = 2
    collect([f], curves)
    assert f.values == {1: 0.7}


def test_promote_runs_the_finalists_and_retrains_the_best_mean(promoted, tiny_sweep):
    out = promoted["stdout"]
    assert "finalists: the best 2 configuration(s) re-run with 2 new training seed(s) [1, 2] each" in out
    # 0 when this module runs alone; 4 when an earlier promotion of the session's tiny sweep ran them
    assert re.search(r"\b[04] of 4 runs already done", out)
    record = promoted["provenance"]["finalists"]
    assert len(record["finalists"]) == 2
    for f in record["finalists"]:
        values = list(f["seed_values"].values())
        assert len(values) == 2 and all(isinstance(v, float) for v in values)
        assert f["mean"] == pytest.approx(sum(values) / 2)
    # the chosen configuration is the best mean, and it is the one retrained
    best = max(record["finalists"], key=lambda f: (f["mean"], -f["rank"]))
    assert record["chosen"] == best["trial_id"] == promoted["provenance"]["best_trial"]["trial_id"]
    assert promoted["provenance"]["best_trial"]["round"] == best["rounds"]
    assert f"chosen: {best['trial_id']}" in out
    # a new seed changes the run (initialisation, batch order, dropout): not every value is the same
    every = [v for f in record["finalists"] for v in f["seed_values"].values()] + [f["sweep_value"] for f in record["finalists"]]
    assert len(set(every)) > 1
    # each finalist trial ran exactly to its configuration's winning round, with its seed in the config
    runs = [d for run in (tiny_sweep["path"] / "hpo" / "finalists").iterdir() if run.is_dir() for d in run.iterdir() if d.is_dir()]
    assert len(runs) == 4
    rounds = {f["trial_id"]: f["rounds"] for f in record["finalists"]}
    params = {json.dumps(f["params"], sort_keys=True): f["rounds"] for f in record["finalists"]}
    for run in runs:
        config = json.loads((run / "params.json").read_text())
        assert config["seed"] in (1, 2)
        rows = [json.loads(line) for line in (run / "result.json").read_text().splitlines() if line.strip()]
        target = params[json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)]
        assert rows[-1]["training_iteration"] == target
        assert not list(run.glob("checkpoint_*"))  # deleted once the runs ended
    assert set(rounds) == {f["trial_id"] for f in record["finalists"]}


def test_card_and_status_show_each_finalists_mean_and_sd(promoted, tiny_sweep):
    card = (promoted["dir"] / "README.md").read_text()
    assert "## Finalists over seeds" in card and "mean ± sd" in card and "(chosen)" in card
    for f in promoted["provenance"]["finalists"]["finalists"]:
        assert f"{f['mean']:.4f} ± {f['std']:.4f}" in card
    status = run_cli(["status", str(tiny_sweep["path"])], tiny_sweep["env"], tiny_sweep["tmp"], timeout=120)
    assert status.returncode == 0, status.stdout[-3000:]
    assert "finalists (val_accuracy" in status.stdout and "mean ± sd" in status.stdout
    for f in promoted["provenance"]["finalists"]["finalists"]:
        assert f"{f['mean']:.4f} ± {f['std']:.4f}" in status.stdout


def test_a_rerun_reuses_finished_finalists_and_runs_only_the_missing_one(promoted, tiny_sweep):
    sweep = tiny_sweep["tmp"] / "finalists-rerun"
    shutil.copytree(tiny_sweep["path"], sweep, ignore=shutil.ignore_patterns("wandb", "published-*", "champion-*"))
    runs = sorted(d for run in (sweep / "hpo" / "finalists").iterdir() if run.is_dir() for d in run.iterdir() if d.is_dir())
    shutil.rmtree(runs[0])  # as if that run had never been made
    out = tiny_sweep["tmp"] / "promoted-rerun"
    result = run_cli(["promote", str(sweep), "--dry-run", str(out)], tiny_sweep["env"], tiny_sweep["tmp"], timeout=SLOW)
    assert result.returncode == 0, result.stdout[-5000:]
    assert "3 of 4 runs already done" in result.stdout
    new_runs = [d for run in (sweep / "hpo" / "finalists").iterdir() if run.is_dir() for d in run.iterdir() if d.is_dir()]
    assert len(new_runs) == 4  # the 3 kept plus the 1 run again
    # training is seeded: the run made again gives the value it gave the first time, and the same choice
    again = json.loads((out / "provenance.json").read_text())["finalists"]
    assert again == promoted["provenance"]["finalists"]
    assert "reusing the retrained model" in result.stdout
    rerun = run_cli(["promote", str(sweep), "--dry-run", str(out)], tiny_sweep["env"], tiny_sweep["tmp"], timeout=SLOW)
    assert rerun.returncode == 0 and "4 of 4 runs already done" in rerun.stdout

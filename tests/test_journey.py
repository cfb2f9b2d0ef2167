"""The fast tier's one journey through every lifecycle package, as a user runs it: a 2-trial sweep (real
local Ray, TPE, ASHA, W&B offline) -> ``hpo status`` -> ``hpo promote --dry-run`` -> the dashboard's API.
Small enough for every change (about two minutes on 2 cores); the slow tier tests each step in depth."""

from __future__ import annotations

import json

from hpo.core.results import load_sweep
from tests.conftest import cli_env, run_cli, tiny_spec, write_spec
from tests.test_inspect import serve_dashboard


def test_a_two_trial_sweep_is_read_promoted_and_served(tmp_path):
    spec = tiny_spec(tmp_path / "runs", name="journey")
    spec["data"].update(train_size=400, test_size=100)
    spec["training"].update(max_length=64, epochs=1)
    spec["scheduler"] = {"type": "asha", "max_rounds": 2, "grace_period": 1, "reduction_factor": 2}
    spec["budget"] = {"num_trials": 2, "max_concurrent": 2}
    spec["searcher"] = {"type": "tpe", "seed": 0, "n_startup_trials": 2}
    spec["promotion"]["finalists"] = {"top_k": 1, "seeds": 1}  # off
    spec["promotion"]["gate"].update(min_test_accuracy=0.0, min_class_recall=0.0, sanity_examples=[])
    env = cli_env(tmp_path)
    path = tmp_path / "runs" / "journey"

    swept = run_cli(["sweep", str(write_spec(tmp_path / "journey.yaml", spec))], env, tmp_path)
    assert swept.returncode == 0, swept.stdout[-4000:]
    sweep = load_sweep(path)
    assert len(sweep.trials) == 2 and all(t.rounds for t in sweep.trials)
    winner, value, _ = sweep.winner()

    status = run_cli(["status", str(path)], env, tmp_path, timeout=120)
    assert status.returncode == 0, status.stdout[-4000:]
    assert winner.trial_id in status.stdout and f"{value:.4f}" in status.stdout

    promoted = run_cli(["promote", str(path), "--dry-run", str(tmp_path / "promoted")], env, tmp_path)
    assert promoted.returncode == 0, promoted.stdout[-4000:]
    card = (tmp_path / "promoted" / "README.md").read_text()
    assert winner.trial_id in card
    assert json.loads((tmp_path / "promoted" / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}

    served = serve_dashboard(str(path), (path / "hpo" / "optuna.journal").read_bytes, env, tmp_path, "journey")
    trials = served["details"][served["study"]]["trials"]
    assert len(trials) == 2 and served["journal_unchanged"]

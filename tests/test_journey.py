"""The README's first command, shrunk, in a copy of the repository alone in an empty folder: the
quickstart spec as shipped, made small (2 trials, a few hundred reviews), swept (real local Ray, TPE,
ASHA, W&B offline) -> ``hpo status`` -> ``hpo promote --dry-run`` -> the dashboard's API. It proves that the
repository needs nothing beside it (its data ships inside it) and it is the fast tier's one journey through
every lifecycle package (about two minutes on 2 cores); the slow tier tests each step in depth."""

from __future__ import annotations

import json
import shutil
import subprocess

import yaml

from hpo.core.results import load_sweep
from tests.conftest import REPO, cli_env, run_cli
from tests.test_inspect import serve_dashboard


def copy_of_the_repository(into) -> object:
    """What ``git clone`` of this working tree gives (tracked files and new files git does not ignore), in
    ``into/repo``, with nothing beside it."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
    clone = into / "repo"
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / name)
    return clone


def test_the_quickstart_shrunk_runs_in_a_lone_copy_of_the_repository(tmp_path):
    clone = copy_of_the_repository(tmp_path)
    assert not (clone / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    spec = yaml.safe_load((clone / "search_spaces" / "quickstart.yaml").read_text())
    spec["name"] = "journey"
    spec["data"].update(train_size=400, test_size=100)
    spec["training"].update(max_length=64, epochs=1, rounds_per_epoch=2)
    spec["scheduler"].update(max_rounds=2, grace_period=1, patience=None)
    spec["budget"] = {"num_trials": 2, "max_concurrent": 2}
    spec["searcher"]["n_startup_trials"] = 2
    spec["tracking"]["mode"] = "offline"
    spec["promotion"]["finalists"] = {"top_k": 1, "seeds": 1}  # off
    # two rounds on 400 reviews learn little: the gates are not what this journey tests (test_promote does)
    spec["promotion"]["gate"].update(min_test_accuracy=0.0, min_class_recall=0.0, sanity_examples=[], min_lift_over_baseline=-100.0)
    (clone / "search_spaces" / "journey.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = cli_env(tmp_path)
    path = clone / "runs" / "journey"

    swept = run_cli(["sweep", "search_spaces/journey.yaml"], env, clone)
    assert swept.returncode == 0, swept.stdout[-4000:]
    sweep = load_sweep(path)
    assert len(sweep.trials) == 2 and all(t.rounds for t in sweep.trials)
    winner, value, _ = sweep.winner()

    status = run_cli(["status", "runs/journey"], env, clone, timeout=120)
    assert status.returncode == 0, status.stdout[-4000:]
    assert winner.trial_id in status.stdout and f"{value:.4f}" in status.stdout

    promoted = run_cli(["promote", "runs/journey", "--dry-run", "promoted/journey"], env, clone)
    assert promoted.returncode == 0, promoted.stdout[-4000:]
    card = (clone / "promoted" / "journey" / "README.md").read_text()
    assert winner.trial_id in card
    assert json.loads((clone / "promoted" / "journey" / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}

    served = serve_dashboard(str(path), (path / "hpo" / "optuna.journal").read_bytes, env, clone, "journey")
    trials = served["details"][served["study"]]["trials"]
    assert len(trials) == 2 and served["journal_unchanged"]

"""A real sweep on a real local Ray, through the CLI: what a user relies on after `hpo sweep`."""

from __future__ import annotations

import glob
import json

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpo.core.results import FINISHED, STOPPED, load_sweep
from tests.conftest import run_cli
from tests.wandb_records import read_run


@pytest.fixture(scope="module")
def sweep(tiny_sweep):
    return load_sweep(tiny_sweep["path"])


def test_every_trial_ran_and_none_errored(sweep):
    assert len(sweep.trials) == 6
    assert all(t.outcome in (FINISHED, STOPPED) for t in sweep.trials), [(t.trial_id, t.outcome, t.error) for t in sweep.trials]


def test_asha_stopped_a_trial_before_the_others(sweep):
    stopped = [t for t in sweep.trials if t.outcome == STOPPED]
    finished = [t for t in sweep.trials if t.outcome == FINISHED]
    assert stopped, "ASHA stopped no trial"
    assert finished, "no trial ran to the end"
    assert min(t.rounds_done for t in stopped) < max(t.rounds_done for t in finished)
    assert all(t.rounds_done < t.rounds_planned for t in stopped)


def test_best_trial_beats_chance_clearly(sweep):
    trial, value, rnd = sweep.winner()
    assert value >= 0.65, (trial.trial_id, value)
    assert 1 <= rnd <= trial.rounds_done
    best_round = trial.rounds[rnd - 1]
    assert best_round["val_accuracy"] == value
    # every class is recalled, not one class guessed for everything
    assert best_round["val_recall_negative"] > 0.4 and best_round["val_recall_positive"] > 0.4


def test_each_round_reports_the_metrics_and_a_checkpoint(sweep):
    for t in sweep.trials:
        for r in t.rounds:
            for key in ("val_accuracy", "val_f1_macro", "val_loss", "val_recall_negative", "val_recall_positive", "train_loss"):
                assert key in r, (t.trial_id, key)
            assert r["checkpoint_dir_name"]
        assert t.rounds[0]["startup_seconds"] > 0


def test_disk_budget_holds_and_only_the_best_trial_keeps_a_checkpoint(tiny_sweep, sweep):
    from hpo.core.results import disk_usage
    from tests.conftest import TINY_BUDGET_MB

    best, _, _ = sweep.winner()
    kept = {t.trial_id for t in sweep.trials if glob.glob(str(t.folder / "checkpoint_*" / "train_state.pt"))}
    assert kept == {best.trial_id}
    assert 0 < tiny_sweep["peak_bytes"] <= TINY_BUDGET_MB * 2**20, tiny_sweep["peak_bytes"] / 2**20
    assert disk_usage(tiny_sweep["path"]) < 60 * 2**20


def test_tpe_chose_the_configs(tiny_sweep, sweep):
    journal = tiny_sweep["path"] / "hpo" / "optuna.journal"
    study = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert len(study.trials) == len(sweep.trials)
    study_params = sorted(json.dumps(t.params, sort_keys=True) for t in study.trials)
    tune_params = sorted(json.dumps(t.params, sort_keys=True) for t in sweep.trials)
    assert study_params == tune_params
    states = {t.state for t in study.trials}
    # ASHA's early stops reach the study as PRUNED; the others as COMPLETE with their learning curves
    assert optuna.trial.TrialState.PRUNED in states and optuna.trial.TrialState.COMPLETE in states
    assert all(t.intermediate_values for t in study.trials)
    # seeded TPE: the first startup configs are what the seeded sampler draws
    first = min(study.trials, key=lambda t: t.number)
    lr = first.params["learning_rate"]
    assert 5e-4 <= lr <= 5e-3


def test_each_trial_has_a_wandb_offline_run_with_its_metrics(tiny_sweep, sweep):
    files = glob.glob(str(tiny_sweep["path"] / "tiny_*" / "wandb" / "offline-run-*" / "run-*.wandb"))
    runs = {r.run_id: r for r in map(read_run, files)}
    assert set(runs) == {t.trial_id for t in sweep.trials}
    for t in sweep.trials:
        run = runs[t.trial_id]
        assert run.group == "tiny" and run.project == "hpo-tests" and run.name == t.name
        assert run.config["learning_rate"] == pytest.approx(t.params["learning_rate"])
        accs = [h["val_accuracy"] for h in run.history if "val_accuracy" in h]
        assert accs == pytest.approx([r["val_accuracy"] for r in t.rounds])
        assert not any("key" in k.lower() or "token" in k.lower() for k in run.config)
        # written completely, and marked so: a resume would not replay it
        assert json.loads((tiny_sweep["path"] / f"tiny_{t.trial_id}" / "wandb-logged.json").read_text()) == {"run_id": t.trial_id}


def test_sweep_stores_spec_and_data_balance(tiny_sweep):
    meta = tiny_sweep["path"] / "hpo"
    data = json.loads((meta / "data.json").read_text())
    assert data["label_names"] == ["negative", "positive"]
    assert set(data["class_counts"]) == {"train", "validation", "test"}
    assert data["class_counts"]["validation"] == {"negative": 198, "positive": 202}
    assert len(data["fingerprint"]) == 64
    assert "name: tiny" in (meta / "spec.yaml").read_text()


def test_cli_prints_path_best_trial_and_wandb_sync(tiny_sweep, sweep):
    out = tiny_sweep["stdout"]
    trial, value, _ = sweep.winner()
    assert str(tiny_sweep["path"]) in out
    assert f"best: {trial.trial_id}" in out and f"{value:.4f}" in out
    assert "wandb sync" in out


def test_console_is_one_line_per_trial_not_rays_tables(tiny_sweep, sweep):
    """Piped, the sweep prints one line per trial as it ends (outcome, its best value, the sweep's best so
    far, time), then the trials table: a screen, not Ray Tune's per-result boxes."""
    out = tiny_sweep["stdout"]
    ended = [line for line in out.splitlines() if f"/{len(sweep.trials)} ended" in line]
    assert len(ended) == len(sweep.trials)
    for t in sweep.trials:
        line = next(line for line in ended if f" {t.trial_id} " in line)
        best = t.best(sweep.spec.metric, sweep.spec.mode)
        assert f"{t.outcome} after {t.rounds_done} round(s): val_accuracy {best[0]:.4f} (round {best[1]})" in line, line
    assert f"best {sweep.winner()[1]:.4f}" in ended[-1]
    assert "Configuration for experiment" not in out and "Trial status" not in out and "A new study created" not in out
    assert len(out.splitlines()) < 45, out


def test_status_shows_the_trials_and_the_best(tiny_sweep, sweep):
    result = run_cli(["status", str(tiny_sweep["path"])], tiny_sweep["env"], tiny_sweep["tmp"], timeout=60)
    assert result.returncode == 0, result.stdout
    trial, value, _ = sweep.winner()
    assert f"{trial.trial_id} *best*" in result.stdout
    assert "stopped (ASHA)" in result.stdout and "finished" in result.stdout and "disk used" in result.stdout
    assert f"{value:.4f}" in result.stdout
    for t in sweep.trials:
        assert t.trial_id in result.stdout


def test_a_second_sweep_with_the_same_name_is_refused(tiny_sweep):
    result = run_cli(["sweep", str(tiny_sweep["spec_file"])], tiny_sweep["env"], tiny_sweep["tmp"], timeout=120)
    assert result.returncode != 0
    assert "already exists" in result.stdout


def test_status_of_a_non_sweep_folder_is_a_clear_error(tmp_path, tiny_sweep):
    result = run_cli(["status", str(tmp_path)], tiny_sweep["env"], tmp_path, timeout=60)
    assert result.returncode == 1 and "not a sweep folder" in result.stdout


def test_a_trial_kept_on_by_backfill_never_outlasts_the_others(sweep):
    """ASHA stops at rungs only, so a trial stopped at another round was backfill: it ran in a slot that
    would have stood idle, and was stopped when the last other trial ended, not later."""
    rungs = set(sweep.spec.scheduler.rungs())
    assert sweep.spec.scheduler.backfill
    for t in sweep.trials:
        if t.outcome == STOPPED and t.rounds_done not in rungs:
            others = max(o.rounds[-1]["timestamp"] for o in sweep.trials if o is not t)
            assert t.rounds[-1]["timestamp"] <= others, t.trial_id
            assert t.rounds_done > min(rungs), t.trial_id  # it went on past the rung where ASHA stopped it


def test_baselines_are_stored_shown_above_the_trials_in_status_and_logged_to_wandb(tiny_sweep, sweep):
    from hpo.sweep.baseline import C_GRID

    path = tiny_sweep["path"]
    b = json.loads((path / "hpo" / "baselines.json").read_text())
    assert b["split"] == "validation" and b["texts"] == 400 and b["metric"] == "val_accuracy"
    assert b["majority"]["label"] == "positive" and b["majority"]["val_accuracy"] == pytest.approx(202 / 400)
    assert b["tfidf"]["C"] in C_GRID and b["tfidf"]["val_accuracy"] == max(b["tfidf"]["c_grid"].values()) > 0.7
    out = run_cli(["status", str(path)], tiny_sweep["env"], tiny_sweep["tmp"], timeout=60).stdout
    line = next(x for x in out.splitlines() if x.startswith("baselines on the validation split (400 texts)"))
    assert f"majority class (positive) {202 / 400:.4f}" in line and f"{b['tfidf']['val_accuracy']:.4f}" in line
    assert out.index(line) < out.index("tiny: 6 trials")  # above the trials table
    trial, value, _ = sweep.winner()
    assert f"TF-IDF baseline {b['tfidf']['val_accuracy']:.4f} ({(value - b['tfidf']['val_accuracy']) * 100:+.2f} points)" in out
    runs = [read_run(f) for f in (path / "hpo" / "baselines").glob("wandb/offline-run-*/run-*.wandb")]
    assert len(runs) == 1 and runs[0].group == "tiny" and runs[0].job_type == "baseline"
    assert runs[0].summary["val_accuracy"] == pytest.approx(b["tfidf"]["val_accuracy"])
    assert runs[0].config["C"] == b["tfidf"]["C"]


def test_status_reports_the_cost_of_the_sweep(tiny_sweep, sweep):
    from hpo.analysis.cost import sweep_cost

    out = run_cli(["status", str(tiny_sweep["path"])], tiny_sweep["env"], tiny_sweep["tmp"], timeout=60).stdout
    cost = sweep_cost(sweep)
    seconds = sum(max(r["time_total_s"] for r in t.rounds) for t in sweep.trials)
    assert cost.seconds == pytest.approx(seconds) and 0 < cost.saved_share < 1  # ASHA stopped a trial
    assert f"cost: {seconds:.0f} trial-s over 6 trials ({seconds:.0f} CPU-s, 0 GPU-s at 1 CPU / 0 GPU per trial)" in out
    assert f"early stopping saved {cost.saved_share:.0%} of the trial-seconds" in out
    assert "trial-s" in out.split("tiny: 6 trials")[1].splitlines()[2]  # each trial's seconds, a column of the table


def test_duplicates_are_counted_at_sweep_start_with_the_fingerprint(tiny_sweep):
    data = json.loads((tiny_sweep["path"] / "hpo" / "data.json").read_text())
    d = data["duplicates"]
    assert set(d) == {"within", "validation_in_train", "test_in_train", "test_before_drop", "test_dropped"}
    assert d["test_before_drop"] == 400 and d["test_dropped"] == d["test_in_train"]
    assert sum(data["class_counts"]["test"].values()) == 400 - d["test_dropped"]
    assert "duplicates (after normalising case, whitespace and markup)" in tiny_sweep["stdout"]

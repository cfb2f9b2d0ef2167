"""Failures a sweep must survive: a worker node lost mid-sweep (a real multi-node Ray on one machine),
a driver killed with SIGKILL and resumed, a trial whose loss diverges, and node-local storage on a cluster."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpo.core.results import FINISHED, STOPPED, load_sweep
from tests.conftest import _descendants, cli_env, finish_cli, kill_pids, run_cli, start_cli, tiny_spec, write_spec
from tests.test_wandb_story import assert_sweep_run_tells_the_sweep, assert_trial_runs_tell_the_sweep
from tests.wandb_records import read_run


def small_spec(tmp: Path, name: str, trials: int, **data) -> Path:
    spec = tiny_spec(tmp / "runs", name=name)
    spec["data"].update(data)
    spec["budget"]["num_trials"] = trials
    spec["failures"] = {"max_retries": 2}
    return write_spec(tmp / f"{name}.yaml", spec)


def rounds_reported(folder: Path) -> dict[str, list[dict]]:
    out = {}
    for f in folder.glob("*/result.json"):
        rows = []
        for line in f.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        out[f.parent.name] = rows
    return out


def wait_for(predicate, timeout: float, proc=None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended early:\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the sweep to get there")


def trial_failures(folder: Path) -> dict[str, int]:
    state = sorted(folder.glob("experiment_state-*.json"))[-1]
    out = {}
    for meta, run in json.loads(state.read_text())["trial_data"]:
        meta, run = json.loads(meta) if isinstance(meta, str) else meta, json.loads(run) if isinstance(run, str) else run
        out[meta["trial_id"]] = run.get("num_failures", 0)
    return out


def assert_each_trial_once(path: Path, n: int, rerun: dict[str, int] | None = None) -> None:
    """``rerun``: per trial, how many times it was restarted after a failure. Each restart may run again
    the one round whose checkpoint Tune had not yet registered when the node died (Tune logs a result
    before it records the result's checkpoint); nothing else is run twice, and nothing from scratch."""
    sweep = load_sweep(path)
    assert len(sweep.trials) == n
    assert all(t.outcome in (FINISHED, STOPPED) for t in sweep.trials), [(t.trial_id, t.outcome, t.error) for t in sweep.trials]
    configs = [json.dumps(t.params, sort_keys=True) for t in sweep.trials]
    assert len(set(configs)) == n, "a config was tried twice"
    for t in sweep.trials:
        rounds = [r["training_iteration"] for r in t.rounds]
        assert rounds == sorted(rounds) and rounds.count(1) == 1, (t.trial_id, rounds)
        assert sorted(set(rounds)) == list(range(1, max(rounds) + 1)), (t.trial_id, rounds)
        assert len(rounds) - len(set(rounds)) <= (rerun or {}).get(t.trial_id, 0), (t.trial_id, rounds)
    # One W&B run id per trial, holding every round the trial reported. A logger killed with the driver
    # leaves a file cut off before its run record; the resumed sweep writes that trial's rounds again
    # under the trial's id.
    runs = [read_run(f) for f in path.glob(f"{sweep.spec.name}_*/wandb/offline-run-*/run-*.wandb")]
    assert {r.run_id for r in runs if r.run_id} == {t.trial_id for t in sweep.trials}
    assert all(not r.history for r in runs if not r.run_id)
    for t in sweep.trials:
        logged = {h["training_iteration"] for r in runs if r.run_id == t.trial_id for h in r.history}
        assert logged == {r["training_iteration"] for r in t.rounds}, (t.trial_id, sorted(logged))
    study = optuna.load_study(study_name=sweep.spec.name, storage=JournalStorage(JournalFileBackend(str(path / "hpo" / "optuna.journal"))))
    states = [t.state for t in study.trials]
    assert sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states) == n
    assert optuna.trial.TrialState.RUNNING not in states


def sweep_losing_a_node(spec_file: Path, env: dict, cwd: Path, both_busy) -> tuple[object, float]:
    """A sweep on a real two-worker Ray cluster (head without CPUs) whose first worker node dies once
    ``both_busy()`` says both workers run a trial that has checkpointed a round. Returns (the CLI's
    result, when the node died)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    proc = start_cli(["sweep", str(spec_file), "--address", cluster.address], env, cwd)
    try:
        wait_for(both_busy, 300, proc)
        killed_at = time.time()
        cluster.remove_node(workers[0], allow_graceful=False)
        result = finish_cli(proc, timeout=420)
    finally:
        finish_cli(proc, timeout=1) if proc.poll() is None else None
        cluster.shutdown()
    assert result.returncode == 0, result.stdout[-5000:]
    return result, killed_at


@pytest.mark.slow
def test_worker_node_lost_mid_sweep(tmp_path):
    spec_file = small_spec(tmp_path, "nodeloss", trials=4, train_size=1200)
    path = tmp_path / "runs" / "nodeloss"
    _, killed_at = sweep_losing_a_node(spec_file, cli_env(tmp_path), tmp_path, lambda: sum(len(r) >= 1 for r in rounds_reported(path).values()) >= 2)
    failures = trial_failures(path)
    hit = [tid for tid, n in failures.items() if n >= 1]
    assert hit, f"no trial was on the lost node: {failures}"
    assert_each_trial_once(path, 4, rerun=failures)
    sweep = load_sweep(path)
    restarted = next(t for t in sweep.trials if t.trial_id in hit)
    resumed_round = next(r for r in restarted.rounds if r.get("timestamp", 0) >= int(killed_at))
    recovery = resumed_round["timestamp"] - killed_at
    (tmp_path / "recovery.json").write_text(json.dumps({"trial": restarted.trial_id, "recovery_seconds": recovery}))
    print(f"node-loss recovery: trial {restarted.trial_id} reported its next round {recovery:.1f}s after the node died")


@pytest.mark.slow
def test_driver_killed_and_resumed(tmp_path):
    spec_file = small_spec(tmp_path, "crash", trials=6)
    env = cli_env(tmp_path)
    path = tmp_path / "runs" / "crash"
    proc = start_cli(["sweep", str(spec_file)], env, tmp_path)

    def mid_sweep():
        rows = rounds_reported(path)
        return len(rows) >= 3 and sum(bool(r) and r[-1].get("done") for r in rows.values()) >= 1

    try:
        wait_for(mid_sweep, 300, proc)
        before = {name: len(rows) for name, rows in rounds_reported(path).items()}
        ray_processes = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)  # the driver dies; its embedded Ray goes with the machine
        proc.wait(timeout=30)
        kill_pids(ray_processes)
    finally:
        finish_cli(proc, timeout=1)
    assert load_sweep(path).counts()  # the sweep folder is readable after the crash
    result = run_cli(["resume", str(path)], env, tmp_path, timeout=420)
    assert result.returncode == 0, result.stdout[-5000:]
    assert "resuming crash" in result.stdout
    assert_each_trial_once(path, 6)
    # W&B as synced: one run per trial with its best value, round and outcome tag; one sweep run
    assert_trial_runs_tell_the_sweep(path)
    assert_sweep_run_tells_the_sweep(path)
    after = rounds_reported(path)
    finished_before = [n for n, rows in rounds_reported(path).items() if n in before and rows and before[n] and rows[before[n] - 1].get("done")]
    for name in finished_before:  # finished trials were kept, not run again
        assert len(after[name]) == before[name], name


def test_diverging_trial_reports_its_failure_once_and_ends_without_raising(monkeypatch, tmp_path):
    """A NaN loss ends the trial normally (Tune would retry an exception) with the reason attached."""
    import numpy as np
    from ray import tune

    import trainables.trial as trial
    from hpo.core.spec import parse_spec
    from hpo.sweep.prepare import prepare

    raw = tiny_spec(tmp_path / "runs")
    raw["data"].update(train_size=200, test_size=40)
    spec = parse_spec(raw)
    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    prepared = prepare(spec, echo=lambda _: None)
    real_rounds = trial.train_rounds

    def nan_in_round_2(*args, **kwargs):
        for i, figures in enumerate(real_rounds(*args, **kwargs)):
            yield {**figures, "train_loss": float("nan")} if i == 1 else figures

    reports = []
    monkeypatch.setattr(trial, "train_rounds", nan_in_round_2)
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    trial.run_trial({"learning_rate": 1e-3}, settings=spec.trial_settings(), data=prepared.data, source=prepared.source)
    assert len(reports) == 2
    assert "failure" not in reports[0] and np.isfinite(reports[0]["val_accuracy"])
    assert reports[1]["failure"].startswith("diverged: training loss nan in round 2")
    assert reports[1]["val_accuracy"] == 0.0 and reports[1]["round"] == 2


def test_searcher_records_a_failed_trial_as_fail_and_status_shows_the_reason(tmp_path):
    from hpo.core.results import TrialRecord
    from hpo.tune.searcher import make_searcher
    from hpo.core.spec import parse_spec

    spec = parse_spec(tiny_spec(tmp_path / "runs", name="fails"))
    from hpo.core.storage import Location

    journal = tmp_path / "hpo" / "optuna.journal"
    searcher = make_searcher(spec, Location.parse(tmp_path)).searcher.searcher  # generator -> limiter -> TPE
    searcher.set_search_properties(spec.metric, spec.mode, {})
    config = searcher.suggest("t1")
    assert 5e-4 <= config["learning_rate"] <= 5e-3
    searcher.on_trial_result("t1", {"val_accuracy": 0.6, "training_iteration": 1, "round": 1, "rounds_planned": 6})
    failed = {"val_accuracy": 0.0, "failure": "diverged: training loss nan in round 2", "round": 2, "rounds_planned": 6, "training_iteration": 2}
    searcher.on_trial_complete("t1", failed)
    study = optuna.load_study(study_name="fails", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert study.trials[0].intermediate_values == {1: 0.6}
    record = TrialRecord("t1", "fails_t1", tmp_path, config, "TERMINATED", [{"val_accuracy": 0.6, "training_iteration": 1}, failed])
    assert record.outcome == "failed: diverged: training loss nan in round 2"
    assert record.best("val_accuracy", "max") == (0.6, 1)  # the failure's placeholder value never wins


def test_node_local_storage_is_refused_on_a_multi_host_cluster(monkeypatch, tmp_path):
    import ray

    from hpo.sweep.driver import check_storage, filesystem_type
    from hpo.core.errors import ExperimentError
    from hpo.core.spec import parse_spec

    spec = parse_spec(tiny_spec(tmp_path / "runs"))
    nodes = [{"Alive": True, "NodeManagerAddress": "10.0.0.1"}, {"Alive": True, "NodeManagerAddress": "10.0.0.2"}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    kind = filesystem_type(str(tmp_path))
    with pytest.raises(ExperimentError, match=f"node-local filesystem \\({kind}\\).*2 hosts.*s3://"):
        check_storage(spec)
    check_storage(spec.model_copy(update={"storage": "s3://bucket/sweeps"}))  # shared: accepted
    monkeypatch.setattr(ray, "nodes", lambda: nodes[:1] * 3)  # several raylets on one host: fine
    check_storage(spec)


def test_cluster_yaml_is_a_valid_launcher_config():
    import yaml
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    from tests.conftest import REPO

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(fillout_defaults(config))  # Ray's own schema check, as `ray up` does
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"]["CPU"] == 0  # trials never land on the driver's node
    gpu = config["available_node_types"]["gpu_worker"]
    assert 0 < gpu["min_workers"] < gpu["max_workers"]
    assert any("pip install" in c and "-e ~/hpo" in c for c in config["setup_commands"])
    assert "/home/ubuntu/hpo" in config["file_mounts"]


def test_resume_writes_a_wandb_run_that_was_lost(tiny_sweep, tmp_path):
    """A trial whose W&B run never reached the sweep folder (a driver killed while it was being
    written) gets it back from its result.json on resume, under its own run id, with every round."""
    path = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_sweep["path"], path)
    sweep = load_sweep(path)
    lost, kept = sweep.trials[0], sweep.trials[1:]
    lost_dir = path / f"tiny_{lost.trial_id}"
    shutil.rmtree(lost_dir / "wandb")
    (lost_dir / "wandb-logged.json").unlink()
    result = run_cli(["resume", str(path)], tiny_sweep["env"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:]
    runs = [read_run(f) for f in lost_dir.glob("wandb/offline-run-*/run-*.wandb")]
    assert [r.run_id for r in runs] == [lost.trial_id]
    assert runs[0].group == "tiny" and runs[0].job_type == "trial"
    assert [h["val_accuracy"] for h in runs[0].history] == pytest.approx([r["val_accuracy"] for r in lost.rounds])
    assert (lost_dir / "wandb-logged.json").is_file()
    for t in kept:  # complete runs are left alone
        assert len(list((path / f"tiny_{t.trial_id}").glob("wandb/offline-run-*"))) == 1
    # the replayed run has its best round and outcome tag too; the sweep run is written again, same id
    assert_trial_runs_tell_the_sweep(path)
    assert len(list(path.glob("hpo/wandb/offline-run-*"))) == 2
    assert_sweep_run_tells_the_sweep(path)


def test_a_searcher_state_older_or_newer_than_tunes_trials_is_reconciled_on_resume(tmp_path):
    """In object storage Tune's trial list and the searcher's state are separate uploads, so after a crash
    either may be the newer one. The restored searcher adopts a trial it never heard of, does not draw its
    configuration again, and fails a trial Tune never recorded."""
    from optuna.trial import TrialState

    from hpo.tune.searcher import NEVER_RAN, NEVER_RAN_REDRAWN, NEVER_RAN_WHY, make_searcher
    from hpo.core.spec import parse_spec
    from hpo.core.storage import Location

    spec = parse_spec(tiny_spec(tmp_path / "runs", name="rec"))
    first = make_searcher(spec, Location.parse(tmp_path)).searcher.searcher
    first.set_search_properties(spec.metric, spec.mode, {})
    a = first.suggest("a")
    first.save(str(tmp_path / "searcher-state.pkl"))  # the stored searcher state knows only "a"
    b = first.suggest("b")
    first.suggest("ghost")  # handed out, then the driver died before Tune recorded it

    restored = make_searcher(spec, Location.parse(tmp_path)).searcher.searcher
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    state = lambda config: {"status": "RUNNING", "config": config, "last_result": {}, "metric_analysis": {}}  # noqa: E731
    restored.reconcile({"a": state(a), "b": state(b)})
    study = restored._ot_study
    assert set(restored._ot_trials) == {"a", "b"}
    assert restored._ot_trials["b"].params == b  # adopted: the study's own running trial with b's config
    c = restored.suggest("c")
    assert c not in (a, b)  # the older random state would have drawn b again
    states = [t.state for t in study.trials]
    assert states.count(TrialState.RUNNING) == 3  # a, b, c
    assert TrialState.FAIL in states  # the ghost (and the redraw of b) are failed, not left running
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert {t.user_attrs.get(NEVER_RAN) for t in failed} == {NEVER_RAN_WHY, NEVER_RAN_REDRAWN}  # each says why it never ran
    assert not any(t.intermediate_values for t in failed)
    restored.on_trial_complete("b", {"val_accuracy": 0.7, "training_iteration": 6, "round": 6, "rounds_planned": 6})
    assert [t.value for t in study.trials if t.params == b and t.state == TrialState.COMPLETE] == [0.7]


def test_a_trial_whose_end_the_journal_holds_is_not_entered_twice_on_resume(tmp_path):
    """The searcher state predates a trial that the journal (stored later) already holds as ended: the restored
    searcher adopts that study trial, so the study, its dashboard and a warm start see the trial once."""
    from optuna.trial import TrialState

    from hpo.core.spec import parse_spec
    from hpo.core.storage import Location
    from hpo.tune.searcher import make_searcher

    spec = parse_spec(tiny_spec(tmp_path / "runs", name="ended"))
    first = make_searcher(spec, Location.parse(tmp_path)).searcher.searcher
    first.set_search_properties(spec.metric, spec.mode, {})
    first.save(str(tmp_path / "searcher-state.pkl"))  # before anything was handed out
    a = first.suggest("a")
    last = {"val_accuracy": 0.7, "training_iteration": 2, "round": 2, "rounds_planned": 2}
    first.on_trial_result("a", {**last, "val_accuracy": 0.6, "training_iteration": 1, "round": 1})
    first.on_trial_complete("a", last)  # the journal holds a's end

    restored = make_searcher(spec, Location.parse(tmp_path)).searcher.searcher
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    restored.reconcile({"a": {"status": "TERMINATED", "config": a, "last_result": last, "metric_analysis": {"val_accuracy": {"max": 0.7}}}})
    study = restored._ot_study
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 0.7)]  # once, not a second copy
    assert "a" in restored._completed_trials
    assert restored.suggest("b") != a

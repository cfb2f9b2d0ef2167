"""What must hold when things go wrong: Ctrl-C and SIGTERM stop a sweep within seconds and it resumes; no
planted secret reaches a log, a sweep folder or a cache; promotion never wipes a folder it was not asked
to; resuming a finished sweep changes nothing."""

from __future__ import annotations

import shutil
import signal
import uuid
from pathlib import Path

import pytest

from hpo.core.results import load_sweep
from tests.conftest import cli_env, finish_cli, free_port, run_cli, start_cli, tiny_spec, write_spec
from tests.test_cluster import assert_each_trial_once, rounds_reported, wait_for

RAY_TMP = Path("/tmp/ray")


def _sessions() -> set[Path]:
    return set(RAY_TMP.glob("session_2*")) if RAY_TMP.is_dir() else set()


def _files(*roots: Path):
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.slow
def test_a_signal_stops_the_sweep_saves_it_and_it_resumes_with_no_secret_anywhere(sig, tmp_path):
    secrets = {"WANDB_API_KEY": "planted" + uuid.uuid4().hex, "HF_TOKEN": "hf_planted" + uuid.uuid4().hex}
    # W&B does not answer here: with tracking.mode auto and a key the sweep must fall back to offline
    env = {**cli_env(tmp_path), **secrets, "WANDB_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    spec = tiny_spec(tmp_path / "runs", name="stopped")
    spec["budget"]["num_trials"] = 4
    spec["data"].update(train_size=1200)
    spec["tracking"]["mode"] = "auto"
    spec["promotion"]["finalists"] = {"top_k": 1, "seeds": 1}  # off: this test is about signals and secrets
    spec_file = write_spec(tmp_path / "stopped.yaml", spec)
    path = tmp_path / "runs" / "stopped"
    before = _sessions()
    proc = start_cli(["sweep", str(spec_file)], env, tmp_path)
    try:
        wait_for(lambda: sum(len(r) for r in rounds_reported(path).values()) >= 2, 300, proc)
        proc.send_signal(sig)
        stopped = finish_cli(proc, timeout=120)
    finally:
        finish_cli(proc, timeout=1) if proc.poll() is None else None
    assert stopped.returncode == 130, stopped.stdout[-4000:]
    assert "cannot reach W&B at http://127.0.0.1:" in stopped.stdout and "logging offline instead" in stopped.stdout
    assert f"the sweep was interrupted ({sig.name})" in stopped.stdout
    assert f"hpo resume {path}" in stopped.stdout
    assert "sweep finished" not in stopped.stdout and "promote it" not in stopped.stdout and "Tuner.restore" not in stopped.stdout
    assert "Traceback" not in stopped.stdout
    outputs = [stopped.stdout]
    if sig == signal.SIGINT:  # the whole cycle once: the stopped sweep resumes to its planned trials, is promoted
        resumed = run_cli(["resume", str(path)], env, tmp_path, timeout=420)
        assert resumed.returncode == 0, resumed.stdout[-4000:]
        assert_each_trial_once(path, 4)
        promoted = run_cli(["promote", str(path), "--dry-run", str(tmp_path / "promoted")], env, tmp_path)
        assert promoted.returncode in (0, 3), promoted.stdout[-4000:]  # a gate may fail on 4 tiny trials; it wrote its files
        outputs += [resumed.stdout, promoted.stdout]
    home = Path.home()
    for text in outputs:
        assert not any(secret in text for secret in secrets.values())
    for f in _files(path, tmp_path / "promoted", tmp_path / "cache", home / ".cache" / "wandb", home / ".config" / "wandb", home / ".netrc", *(_sessions() - before)):
        data = f.read_bytes()
        for name, secret in secrets.items():
            assert secret.encode() not in data, f"{name} in {f}"


def test_dry_run_never_replaces_a_folder_it_was_not_given_to_write(tiny_sweep, tmp_path):
    env, cwd, sweep = tiny_sweep["env"], tiny_sweep["tmp"], tiny_sweep["path"]
    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    cases = {str(mine): "not an earlier dry run", str(sweep): "that is the sweep folder", str(sweep / "hpo"): "that is the sweep folder"}
    for target, says in cases.items():
        result = run_cli(["promote", str(sweep), "--dry-run", target], env, cwd, timeout=120)
        assert result.returncode == 2, (target, result.stdout[-3000:])
        assert says in result.stdout and target in result.stdout and "Traceback" not in result.stdout
        assert "retraining" not in result.stdout  # refused before any work
    assert (mine / "notes.txt").read_text() == "keep me"
    assert (sweep / "hpo" / "spec.yaml").is_file() and len(load_sweep(sweep).trials) == 6


def test_resuming_a_finished_sweep_changes_nothing(tiny_sweep, tmp_path):
    path = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_sweep["path"], path)
    before = {str(f.relative_to(path)): f.stat().st_size for f in _files(path)}
    assert any("checkpoint_" in name for name in before)  # the best trial's checkpoint is kept
    result = run_cli(["resume", str(path)], tiny_sweep["env"], tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "the sweep already finished" in result.stdout and "nothing changed" in result.stdout
    assert {str(f.relative_to(path)): f.stat().st_size for f in _files(path)} == before


def test_the_janitor_keeps_the_best_checkpoint_of_trials_it_saw_no_result_of(tmp_path):
    """After a resume the janitor has seen no result of the trials that ended before; Tune's own record
    of their results decides which checkpoint is the best one."""
    import pyarrow.fs

    from hpo.tune.janitor import CheckpointJanitor

    class Storage:
        storage_filesystem = pyarrow.fs.LocalFileSystem()
        experiment_fs_path = str(tmp_path)

    class Trial:
        def __init__(self, trial_id: str, best: float):
            self.trial_id, self.status = trial_id, "TERMINATED"
            self.metric_analysis = {"val_accuracy": {"max": best, "min": 0.5, "last": best}}
            self.storage = Storage()
            self.storage.trial_fs_path = str(tmp_path / trial_id)
            (tmp_path / trial_id / "checkpoint_000001").mkdir(parents=True)
            (tmp_path / trial_id / "checkpoint_000001" / "w.bin").write_bytes(b"x" * 1000)

    trials = [Trial("a", 0.61), Trial("b", 0.83), Trial("c", 0.70)]
    store_state(tmp_path, {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED"})
    CheckpointJanitor("val_accuracy", "max", budget_mb=100).on_experiment_end(trials)
    assert [t.trial_id for t in trials if (tmp_path / t.trial_id / "checkpoint_000001").exists()] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "experiment_state-2026-01-01_00-00-00.json"]  # only checkpoints go
    # a stopped trial can store one more round's checkpoint after its end was tidied (it ran one round
    # ahead of the result that stopped it): the sweep's end removes that one too
    janitor = CheckpointJanitor("val_accuracy", "max", budget_mb=100)
    janitor.on_trial_complete(0, trials, trials[0], result={"val_accuracy": 0.61})
    late = tmp_path / "a" / "checkpoint_000002"
    late.mkdir()
    (late / "w.bin").write_bytes(b"x" * 1000)
    janitor.on_trial_complete(0, trials, trials[2], result={"val_accuracy": 0.70})
    assert late.exists()  # one listing per ended trial while the sweep runs
    janitor.on_experiment_end(trials)
    assert not late.exists() and (tmp_path / "b" / "checkpoint_000001").exists()


def store_state(folder: Path, statuses: dict[str, str]) -> None:
    """Tune's experiment state in ``folder``, as stored: each trial's status."""
    import json

    rows = [[json.dumps({"trial_id": tid, "status": status, "config": {}}), json.dumps({"last_result": {}})] for tid, status in statuses.items()]
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": rows}))


def test_the_janitor_keeps_the_checkpoints_a_resume_continues_from(tmp_path):
    """Tune ends its run after a failure in its loop as after a normal one, with the running trials marked ended
    but not stored so: a trial the stored state calls running keeps its checkpoints, as does a trial that errored
    (``hpo resume`` continues both from their last checkpoint)."""
    import pyarrow.fs

    from hpo.tune.janitor import CheckpointJanitor

    class Storage:
        storage_filesystem = pyarrow.fs.LocalFileSystem()
        experiment_fs_path = str(tmp_path)

    class Trial:
        def __init__(self, trial_id: str, status: str, best: float):
            self.trial_id, self.status, self.storage = trial_id, status, Storage()
            self.metric_analysis = {"val_accuracy": {"max": best}}
            self.storage.trial_fs_path = str(tmp_path / trial_id)
            (tmp_path / trial_id / "checkpoint_000001").mkdir(parents=True)

    trials = [Trial("ended", "TERMINATED", 0.6), Trial("best", "TERMINATED", 0.9), Trial("cut", "TERMINATED", 0.7), Trial("errored", "ERROR", 0.5)]
    store_state(tmp_path, {"ended": "TERMINATED", "best": "TERMINATED", "cut": "RUNNING", "errored": "ERROR"})
    janitor = CheckpointJanitor("val_accuracy", "max", budget_mb=100, at_end_only=True)
    janitor.on_trial_error(0, trials, trials[3])
    janitor.on_experiment_end(trials)
    assert sorted(t.trial_id for t in trials if (tmp_path / t.trial_id / "checkpoint_000001").exists()) == ["best", "cut", "errored"]
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text("{")  # cut short: nothing is known to have ended
    (tmp_path / "ended" / "checkpoint_000002").mkdir()
    CheckpointJanitor("val_accuracy", "max", budget_mb=100).on_experiment_end(trials)
    assert (tmp_path / "ended" / "checkpoint_000002").exists()
    local = CheckpointJanitor("val_accuracy", "max", budget_mb=100)  # on a local disk, as trials end
    local.on_trial_error(0, trials, trials[3])
    assert (tmp_path / "errored" / "checkpoint_000001").exists()


def test_the_janitor_measures_the_sweep_folder_again_only_once_the_last_measurement_is_paid_back(tmp_path, monkeypatch):
    """Measuring the folder lists every file of the sweep: at each trial end its cost grew with the trials.
    It is measured again once 50 times the last measurement's duration has passed, and always at the end."""
    import time

    import pyarrow.fs

    import hpo.tune.janitor
    from hpo.tune.janitor import CheckpointJanitor

    class Storage:
        storage_filesystem = pyarrow.fs.LocalFileSystem()
        experiment_fs_path = str(tmp_path)

    class Trial:
        def __init__(self, trial_id: str):
            self.trial_id, self.status, self.storage = trial_id, "TERMINATED", Storage()
            self.storage.trial_fs_path = str(tmp_path / trial_id)

    measured = []
    real = hpo.tune.janitor.folder_bytes

    def slow_folder_bytes(fs, folder):
        if folder == str(tmp_path):
            measured.append(folder)
            time.sleep(0.05)  # a sweep of many trials: 50 x 0.05 s = 2.5 s before the next measurement
        return real(fs, folder)

    monkeypatch.setattr(hpo.tune.janitor, "folder_bytes", slow_folder_bytes)
    trials = [Trial(name) for name in "abc"]
    janitor = CheckpointJanitor("val_accuracy", "max", budget_mb=100)
    janitor.on_trial_complete(0, trials, trials[0], result={"val_accuracy": 0.61})
    janitor.on_trial_complete(0, trials, trials[1], result={"val_accuracy": 0.62})
    assert len(measured) == 1
    janitor.on_experiment_end(trials)
    assert len(measured) == 2


def test_promoting_to_a_hub_that_cannot_be_reached_fails_before_retraining(tiny_sweep, tmp_path):
    env = {**tiny_sweep["env"], "HF_TOKEN": "hf_" + uuid.uuid4().hex, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    result = run_cli(["promote", str(tiny_sweep["path"]), "--repo-id", "acme/unreachable"], env, tmp_path, timeout=180)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "cannot reach the Hugging Face Hub at http://127.0.0.1:" in result.stdout and "nothing was retrained" in result.stdout
    assert "unexpected error" not in result.stdout and "Traceback" not in result.stdout and "retraining" not in result.stdout


def test_a_wandb_failure_after_a_verified_promotion_is_a_warning(tiny_sweep, tmp_path):
    """A malformed W&B key makes ``wandb.init`` raise at the very end: the model is written and verified."""
    import wandb

    from hpo.promotion.promote import PromoteOptions, promote

    class RefusingWandb:  # the W&B client module, as passed in; its init refuses the key
        Settings = wandb.Settings

        @staticmethod
        def init(**kwargs):
            raise wandb.errors.AuthenticationError("API key must be 40 characters long")

    said: list[str] = []
    shutil.copytree(tiny_sweep["path"], tmp_path / "tiny")
    result = promote(str(tmp_path / "tiny"), PromoteOptions(dry_run_dir=str(tmp_path / "out"), wandb_mode="online", wandb_module=RefusingWandb), said.append)
    assert result.published_metrics == result.metrics and (tmp_path / "out" / "provenance.json").is_file()
    assert any("the promotion succeeded, but logging it to W&B failed: AuthenticationError" in line for line in said), said[-5:]

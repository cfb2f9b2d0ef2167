"""A sweep that lives in object storage, end to end, against a real S3 API on loopback (moto's server):
sweep, status, promotion, the dashboard and the notebook read the bucket; a killed driver resumes from
it; a lost worker node's trial resumes from its checkpoint in it; `hpo submit` runs the sweep as a job
on a Ray head started here; a bad storage URI is refused before anything starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from hpo.core.results import CONVERGED, FINISHED, STOPPED, load_sweep
from hpo.core.storage import Location
from tests.conftest import (
    REPO,
    _descendants,
    finish_cli,
    free_port,
    kill_pids,
    run_cli,
    s3_env,
    start_cli,
    tiny_spec,
    write_spec,
)
from tests.test_cluster import assert_each_trial_once, sweep_losing_a_node, trial_failures, wait_for
from tests.test_inspect import check_dashboard_serves_every_trial, execute_notebook, outputs, serve_dashboard, text_of


@pytest.fixture(scope="module", autouse=True)
def s3_credentials(s3):
    """This process reads the bucket too (and the multi-node cluster's nodes inherit its environment)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3["env"].items():
            mp.setenv(key, value)
        yield


def query_uri(s3: dict, path: str) -> str:
    """A URI that carries its endpoint, as Ray and pyarrow accept it (no AWS_ENDPOINT_URL needed)."""
    return f"s3://{path}?endpoint_override=127.0.0.1:{s3['port']}&scheme=http"


def download(uri: str, dest: Path) -> Path:
    """The whole sweep folder, to check it with the same assertions as a local one."""
    return Location.parse(uri).download_dir(dest)


FINALISTS_OFF = {"top_k": 1, "seeds": 1}  # tests on object storage read the retrain, not the finalists


@pytest.fixture(scope="module")
def s3_sweep(s3, tmp_path_factory) -> dict:
    """The tiny sweep with its storage given as a URI with query parameters (the endpoint is in the URI
    only), as a user of an S3-compatible server would write it. Its driver is killed with SIGKILL mid-sweep
    (some trial done, others mid-way) and the sweep resumed from the bucket: every test here reads a sweep
    that went through a crash, and the first checks that no trial or round was lost or recorded twice."""
    tmp = tmp_path_factory.mktemp("s3sweep")
    env = s3_env(tmp, s3)
    env.pop("AWS_ENDPOINT_URL")
    spec = tiny_spec(tmp / "unused", name="s3tiny")
    spec["storage"] = query_uri(s3, "sweeps/exp")
    spec["failures"] = {"max_retries": 2}
    spec["promotion"]["finalists"] = FINALISTS_OFF
    spec_file = write_spec(tmp / "s3tiny.yaml", spec)
    path = query_uri(s3, "sweeps/exp/s3tiny")
    proc = start_cli(["sweep", str(spec_file)], env, tmp)

    def mid_sweep():
        try:
            trials = load_sweep(path).trials
        except Exception:  # the spec is not written yet
            return False
        return len(trials) >= 3 and any(t.rounds and t.rounds[-1].get("done") for t in trials)

    try:
        wait_for(mid_sweep, 300, proc)
        ray_processes = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kill_pids(ray_processes)
        first = finish_cli(proc, timeout=1)
    finally:
        if proc.poll() is None:
            finish_cli(proc, timeout=1)
    result = run_cli(["resume", path], env, tmp, timeout=420)
    assert result.returncode == 0, result.stdout[-6000:]
    return {"path": path, "first": first.stdout, "stdout": result.stdout, "env": env, "tmp": tmp}


@pytest.fixture(scope="module")
def s3_promoted(s3_sweep) -> dict:
    out = s3_sweep["tmp"] / "promoted"
    result = run_cli(["promote", s3_sweep["path"], "--dry-run", str(out)], s3_sweep["env"], s3_sweep["tmp"])
    assert result.returncode == 0, result.stdout[-6000:]
    return {"out": out, "stdout": result.stdout}


# ------------------------------------------------------------------------------------ the storage layer
def test_a_child_path_is_joined_before_the_query_string(s3):
    loc = Location.parse(query_uri(s3, "sweeps/exp"))
    child = loc.child("s3tiny", "hpo", "spec.yaml")
    assert child.path == "sweeps/exp/s3tiny/hpo/spec.yaml"
    assert child.uri == query_uri(s3, "sweeps/exp/s3tiny/hpo/spec.yaml")
    assert Location.parse(child.uri).path == child.path
    child.write_text("hello")
    assert Location.parse(query_uri(s3, "sweeps/exp/s3tiny/hpo/spec.yaml")).read_text() == "hello"
    child.delete_file()
    assert not child.exists()


@contextmanager
def busy_store() -> Iterator[tuple[str, list[str]]]:
    """A store that answers every request with 503 (busy): its URI for ``s3://sweeps/busy``, and the requests
    it was sent (their HTTP methods), as they come."""
    import http.server
    import threading

    requests: list[str] = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def busy(self):
            requests.append(self.command)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<Error><Code>SlowDown</Code><Message>busy</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = busy

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"s3://sweeps/busy?endpoint_override=127.0.0.1:{server.server_port}&scheme=http&region=us-east-1", requests
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_to_s3_is_tried_a_bounded_number_of_times(monkeypatch):
    """A store that answers every request with 503 (busy): a sweep's request is tried ``S3_ATTEMPTS`` times
    before its error is raised, the check before a sweep starts ``S3_CHECK_ATTEMPTS`` times."""
    from hpo.core import storage
    from hpo.core.errors import ExperimentError, StorageError

    monkeypatch.setattr(storage, "S3_ATTEMPTS", 5)  # the test's own count, and a short wait (pyarrow's default is 3)
    with busy_store() as (uri, requests):
        loc = Location.parse(uri)
        with pytest.raises(ExperimentError, match="cannot read it: .*HTTP status 503"):
            loc.child("result.json").read_text()
        assert len(requests) == 5, requests
        requests.clear()
        with pytest.raises(StorageError, match="cannot reach the storage"):
            loc.check_writable()
        assert len(requests) == storage.S3_CHECK_ATTEMPTS == 3, requests


def _checkpoint_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "train_state.pt").write_bytes(os.urandom(6 * 2**20))
    (folder / "metrics.json").write_text("{}")
    return folder


def test_a_file_the_store_did_not_take_fails_its_copy(s3, tmp_path, monkeypatch):
    """A store that does not complete an upload (down at that moment; here it answers 503): pyarrow's
    ``copy_files`` returned normally with nothing stored, hpo's copy raises."""
    from hpo.core import storage

    monkeypatch.setattr(storage, "S3_ATTEMPTS", 2)
    source = _checkpoint_folder(tmp_path / "checkpoint_000000")
    fs = Location.parse("s3://sweeps/copies").fs
    s3["server"].refuse_completions("/refused/")
    try:
        with pytest.raises(OSError, match="CompleteMultipartUpload"):
            storage.copy_files(str(source), "sweeps/copies/refused", destination_filesystem=fs)
    finally:
        s3["server"].accept_completions()
    assert not Location.parse("s3://sweeps/copies/refused/train_state.pt").exists()
    storage.copy_files(str(source), "sweeps/copies/taken", destination_filesystem=fs)
    storage.copy_files(str(source / "metrics.json"), "sweeps/copies/one/metrics.json", destination_filesystem=fs)
    taken = Location.parse("s3://sweeps/copies/taken")
    assert {f.name: f.fs.get_file_info(f.path).size for f in taken.list_files()} == {"train_state.pt": 6 * 2**20, "metrics.json": 2}
    assert Location.parse("s3://sweeps/copies/one/metrics.json").read_text() == "{}"


@pytest.fixture
def local_ray_cluster():
    from hpo.tune.run import init_ray, shutdown_ray

    init_ray(None, 1)
    try:
        yield
    finally:
        shutdown_ray()


def test_a_trials_process_tries_s3_as_often_as_the_driver(local_ray_cluster, monkeypatch):
    """Ray pickles the sweep's filesystem to a trial's process; pyarrow's pickle leaves its retry bound out."""
    import ray

    from hpo.core import storage

    monkeypatch.setattr(storage, "S3_ATTEMPTS", 4)  # pyarrow's default is 3

    @ray.remote
    def read(fs, path):
        try:
            fs.get_file_info(path)
        except OSError as err:
            return str(err)
        return "read"

    with busy_store() as (uri, requests):
        loc = Location.parse(uri)
        said = ray.get(read.remote(loc.fs, loc.child("result.json").path))
        assert "503" in said and len(requests) == 4, (said, requests)


def test_a_round_whose_checkpoint_the_store_did_not_take_is_not_reported(s3, local_ray_cluster, monkeypatch):
    """The trial fails at that round (and is restarted from its last stored checkpoint) instead of reporting
    the round with a checkpoint that is not in the bucket."""
    from ray import tune

    from hpo.core import storage
    from hpo.tune.run import ray_storage

    monkeypatch.setattr(storage, "S3_ATTEMPTS", 2)  # the trial's too: a short wait for the refused upload

    def trainable(config):
        import tempfile

        for i in range(2):
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "train_state.pt").write_bytes(b"w" * (6 * 2**20))
                tune.report({"score": i}, checkpoint=tune.Checkpoint.from_directory(folder))

    s3["server"].refuse_completions("/checkpoint_000001/")
    try:
        results = tune.Tuner(
            trainable,
            run_config=tune.RunConfig(name="refused", **ray_storage(Location.parse("s3://sweeps/refused-checkpoint")), failure_config=tune.FailureConfig(max_failures=0)),
        ).fit()
    finally:
        s3["server"].accept_completions()
    result = results[0]
    assert result.error is not None and "CompleteMultipartUpload" in str(result.error), result.error
    assert result.metrics["training_iteration"] == 1 and result.checkpoint.path.endswith("checkpoint_000000")
    stored = Location.parse("s3://sweeps/refused-checkpoint/refused")
    assert [f.name for f in stored.list_files(recursive=True) if "/checkpoint_" in f.path] == ["train_state.pt"]


def test_local_paths_and_file_uris_are_the_same_location(tmp_path):
    assert Location.parse(tmp_path).uri == tmp_path.resolve().as_posix()
    assert Location.parse(f"file://{tmp_path}").uri == tmp_path.resolve().as_posix()
    assert Location.parse(tmp_path).child("a", "b").uri == (tmp_path / "a" / "b").as_posix()


# ------------------------------------------------------------------------------------------ the sweep
def test_the_sweep_lands_in_the_bucket_and_nothing_on_local_disk(s3_sweep):
    assert f"experiment: {s3_sweep['path']}" in s3_sweep["stdout"]  # the resumed run's summary
    assert not (s3_sweep["tmp"] / "s3:").exists() and not list(s3_sweep["tmp"].glob("s3*/"))  # no URI glued into a local path
    loc = Location.parse(s3_sweep["path"])
    for name in ("hpo/spec.yaml", "hpo/data.json", "hpo/optuna.journal", "tuner.pkl"):
        assert loc.child(*name.split("/")).is_file(), name
    sweep = load_sweep(s3_sweep["path"])
    assert len(sweep.trials) == 6 and {t.outcome for t in sweep.trials} <= {FINISHED, STOPPED}
    for t in sweep.trials:  # every W&B run copied into the bucket, marked complete
        assert t.folder.child("wandb-logged.json").is_file(), t.trial_id
        assert [d.name for d in t.folder.child("wandb").list_dirs() if d.name.startswith("offline-run-")], t.trial_id


def test_status_reads_the_bucket(s3_sweep):
    result = run_cli(["status", s3_sweep["path"]], s3_sweep["env"], s3_sweep["tmp"], timeout=120)
    assert result.returncode == 0, result.stdout
    sweep = load_sweep(s3_sweep["path"])
    trial, value, rnd = sweep.winner()
    assert f"best: {trial.trial_id} val_accuracy={value:.4f} at round {rnd}" in result.stdout
    assert all(t.trial_id in result.stdout for t in sweep.trials)
    assert "disk used" in result.stdout and "Traceback" not in result.stdout


def test_promote_dry_run_reads_the_bucket_and_keeps_the_model_there(s3_sweep, s3_promoted, tmp_path):
    assert "verified: the published copy's test metrics are identical" in s3_promoted["stdout"]
    provenance = json.loads((s3_promoted["out"] / "provenance.json").read_text())
    winner, _, rnd = load_sweep(s3_sweep["path"]).winner(ended_only=True)
    assert provenance["best_trial"]["trial_id"] == winner.trial_id and provenance["best_trial"]["round"] == rnd
    stored = Location.parse(s3_sweep["path"]).child("hpo", "promotion", "model")
    for name in ("promotion.json", "model.safetensors", "config.json", "provenance.json", "README.md"):
        assert stored.child(name).is_file(), name
    # Another machine (an empty cache) finds the retrained model in the bucket instead of training again.
    env = {**s3_sweep["env"], "HPO_CACHE": str(tmp_path / "other-cache")}
    again = run_cli(["promote", s3_sweep["path"], "--dry-run", str(tmp_path / "again")], env, tmp_path)
    assert again.returncode == 0, again.stdout[-4000:]
    assert "reusing the retrained model" in again.stdout and "retraining" not in again.stdout
    assert json.loads((tmp_path / "again" / "provenance.json").read_text())["test_metrics"] == provenance["test_metrics"]


def test_dashboard_serves_the_study_stored_in_the_bucket(s3_sweep):
    journal = Location.parse(s3_sweep["path"]).child("hpo", "optuna.journal")
    dashboard = serve_dashboard(s3_sweep["path"], journal.read_bytes, s3_sweep["env"], s3_sweep["tmp"], "s3tiny")
    check_dashboard_serves_every_trial(dashboard, load_sweep(s3_sweep["path"]), resumed=True)  # the fixture's sweep was killed


def test_notebook_runs_on_the_bucket(s3_sweep, s3_promoted, tmp_path):
    nb = execute_notebook(s3_sweep["path"], tmp_path / "figures", s3_sweep["env"])
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    sweep = load_sweep(s3_sweep["path"])
    table = pd.read_csv(tmp_path / "figures" / "trials_table.csv", dtype={"trial_id": str})
    assert set(table.trial_id) == {t.trial_id for t in sweep.trials}
    text = text_of(nb)
    assert "not promoted yet" not in text and "predicted negative" in text
    # importance needs 3 trials that ran to the end; how many did depends on where ASHA stopped the others
    ran_to_the_end = sum(t.outcome in (FINISHED, CONVERGED) for t in sweep.trials)
    assert (tmp_path / "figures" / "importance.png").is_file() == (ran_to_the_end >= 3), (ran_to_the_end, text[-2000:])
    if ran_to_the_end < 3:
        assert "importance needs at least 3 trials that ran to the end" in text


# ------------------------------------------------------------------------------- crashes and lost nodes
def test_driver_killed_and_resumed_from_the_bucket(s3_sweep, tmp_path):
    assert "resuming s3tiny" in s3_sweep["stdout"]
    assert_each_trial_once(download(s3_sweep["path"], tmp_path / "copy"), 6)


def test_worker_node_lost_on_s3_storage_resumes_from_the_bucket(s3, tmp_path):
    spec = tiny_spec(tmp_path / "unused", name="s3nodes")
    spec["data"].update(train_size=1200)
    spec["budget"]["num_trials"] = 4
    spec["failures"] = {"max_retries": 2}
    spec["storage"] = "s3://sweeps/nodes"
    spec_file = write_spec(tmp_path / "s3nodes.yaml", spec)
    path = "s3://sweeps/nodes/s3nodes"

    def both_busy():
        try:
            return sum(len(t.rounds) >= 1 for t in load_sweep(path).trials) >= 2
        except Exception:  # nothing stored yet
            return False

    result, _ = sweep_losing_a_node(spec_file, s3_env(tmp_path, s3), tmp_path, both_busy)
    copy = download(path, tmp_path / "copy")
    failures = trial_failures(copy)
    hit = [tid for tid, n in failures.items() if n >= 1]
    assert hit, f"no trial was on the lost node: {failures}"
    assert_each_trial_once(copy, 4, rerun=failures)  # the hit trial went on from its checkpoint, not round 1
    # the console says it in one line per failure; the traceback is in the trial's error.txt
    assert "Traceback" not in result.stdout, result.stdout[-4000:]
    said = [line for line in result.stdout.splitlines() if hit[0] in line]
    assert any(f"{hit[0]} failed (" in line and "run again from its last checkpoint" in line for line in said), said


# ------------------------------------------------------------------------------------ bad storage
def test_bad_storage_is_refused_before_anything_starts(s3, tmp_path):
    env = s3_env(tmp_path, s3)
    spec_file = write_spec(tmp_path / "bad.yaml", tiny_spec(tmp_path / "runs", name="bad"))
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    down = f"s3://sweeps/x?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    cases = {
        "s3://no-such-bucket/sweeps": "the bucket 'no-such-bucket' does not exist",
        down: "cannot reach the storage",
        "s3://hpo-test-access-key:hpo-test-secret-key@sweeps/x": "credentials in a storage URI",
        str(afile): "is a file",
    }
    for storage, cause in cases.items():
        result = run_cli(["sweep", str(spec_file), "--storage", storage], env, tmp_path, timeout=120)
        assert result.returncode == 2, (storage, result.stdout)
        assert cause in result.stdout, (storage, result.stdout)
        assert "Traceback" not in result.stdout and "tokenized" not in result.stdout, storage  # no data loaded
        assert "hpo-test-secret-key" not in result.stdout
    assert afile.read_text() == "not a folder"
    assert not (tmp_path / "runs").exists()


def test_status_of_a_prefix_without_a_sweep_says_so(s3, tmp_path):
    result = run_cli(["status", "s3://sweeps/nothing-here"], s3_env(tmp_path, s3), tmp_path, timeout=60)
    assert result.returncode == 1 and "s3://sweeps/nothing-here: not a sweep folder" in result.stdout
    assert "Traceback" not in result.stdout


# ------------------------------------------------------------------------------------------- hpo submit
@pytest.fixture(scope="module")
def ray_head(s3, tmp_path_factory):
    """A Ray head with its dashboard (job submission) on loopback, token authentication on (Ray's
    default), started in its own HOME and temp dir so its token and logs stay in the test's folder."""
    tmp = tmp_path_factory.mktemp("head")
    home, ray_tmp = tmp / "home", tmp / "ray"
    home.mkdir()
    port, dashboard = free_port(), free_port()
    env = {
        **s3_env(tmp, s3),
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env["RAY_AUTH_MODE"] = "token"  # the head requires the token, clients send it from ~/.ray/auth_token
    ray = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, cwd=tmp, check=True, capture_output=True)
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--temp-dir={ray_tmp}", "--disable-usage-stats",
         # free ports for the agents too: Ray's fixed defaults may be taken by another Ray on this machine
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}", f"--ray-client-server-port={free_port()}"],
        env=env, cwd=tmp, stdout=open(tmp / "head.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 120
        while subprocess.run([ray, "job", "list", "--address", address], env=env, capture_output=True).returncode != 0:
            assert head.poll() is None and time.time() < deadline, (tmp / "head.log").read_text()[-3000:]
            time.sleep(1)
        yield {"address": address, "env": env, "tmp": tmp, "ray_tmp": ray_tmp}
    finally:
        kill_pids([*_descendants(head.pid), head.pid])
        head.wait(timeout=30)


def test_submit_runs_the_sweep_as_a_job_that_the_client_follows_and_promotes(s3, ray_head, tmp_path):
    spec = tiny_spec(tmp_path / "unused", name="jobtiny")
    spec["data"]["files"] = {"train": "s3://data/imdb/train.parquet", "test": "s3://data/imdb/test.parquet"}
    spec["budget"]["num_trials"] = 2
    spec["promotion"]["finalists"] = FINALISTS_OFF
    spec_file = write_spec(tmp_path / "job.yaml", spec)
    import uuid

    # made here, so that no shipped file (this one is in the working directory) contains them
    secrets = {"WANDB_API_KEY": "planted" + uuid.uuid4().hex, "HF_TOKEN": "hf_planted" + uuid.uuid4().hex}
    env = {**ray_head["env"], **secrets}
    result = run_cli(
        ["submit", str(spec_file), "--address", ray_head["address"], "--storage", "s3://sweeps/jobs",
         "--working-dir", str(REPO), "--wandb-mode", "offline", "--follow"],
        env, tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    out = result.stdout
    job_id = next(line.split()[2] for line in out.splitlines() if line.startswith("submitted job "))
    path = "s3://sweeps/jobs/jobtiny"
    assert f"experiment: {path}" in out and f"ray job logs --address {ray_head['address']} --follow {job_id}" in out
    assert f"hpo status {path}" in out and f"job {job_id}: SUCCEEDED" in out
    # the client side, as docs/clusters.md says
    status = run_cli(["status", path], env, tmp_path, timeout=120)
    assert status.returncode == 0 and "2 " in status.stdout and "Traceback" not in status.stdout, status.stdout
    assert len(load_sweep(path).trials) == 2
    promoted = run_cli(["promote", path, "--dry-run", str(tmp_path / "promoted")], env, tmp_path)
    assert promoted.returncode == 0, promoted.stdout[-4000:]
    assert "verified" in promoted.stdout
    # no secret of the client's reached the cluster's logs or the sweep
    swept = download(path, tmp_path / "copy")
    for root in (ray_head["ray_tmp"], swept, tmp_path / "promoted"):
        for f in (p for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink()):
            data = f.read_bytes()
            for secret in secrets.values():
                assert secret.encode() not in data, f"{secret[:8]}... in {f}"


def test_submit_refuses_what_the_cluster_cannot_read(s3, tmp_path):
    env = s3_env(tmp_path, s3)
    outside = tiny_spec(tmp_path / "runs", name="outside")  # data in the repo's data/: outside the working directory
    outside["storage"] = "s3://sweeps/refused"
    spec_file = write_spec(tmp_path / "outside.yaml", outside)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the refusals come before any connection
    result = run_cli(["submit", str(spec_file), "--address", closed, "--working-dir", str(tmp_path)], env, tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout
    assert "data.files.train" in result.stdout and "outside the working directory" in result.stdout and "s3://" in result.stdout
    local = write_spec(tmp_path / "local.yaml", tiny_spec(tmp_path / "runs", name="local"))
    result = run_cli(["submit", str(local), "--address", closed, "--working-dir", str(REPO.parent)], env, tmp_path, timeout=60)
    assert result.returncode == 2 and "is a folder on this machine" in result.stdout and "--storage s3://" in result.stdout, result.stdout
    assert not Location.parse("s3://sweeps/refused").exists()
    for r in (result,):
        assert "Traceback" not in r.stdout


# --------------------------------------------------------------------- resume after a driver crash
def _planted_experiment(root: Location) -> None:
    """An experiment as a driver killed mid-upload leaves it: Tune's saved state knows trial ``a1`` up to
    round 2 (still running) and ``b2`` (ended); ``a1``'s results and W&B run were uploaded later, up to round 4;
    ``c3`` started after the state was saved, and ``d4`` too, only its first checkpoint stored (by its own
    process); ``notes`` is a user's own folder."""
    def state(tid: str, status: str, last: int) -> list[str]:
        return [json.dumps({"trial_id": tid, "status": status, "config": {"lr": 0.1}}), json.dumps({"last_result": {"training_iteration": last}})]

    root.child("experiment_state-2026-01-01_00-00-00.json").write_json({"trial_data": [state("a1", "RUNNING", 2), state("b2", "TERMINATED", 3)]})
    rows = lambda tid, n: "".join(json.dumps({"trial_id": tid, "training_iteration": i, "val_accuracy": i / 10}) + "\n" for i in range(1, n + 1))
    csv_rows = lambda n: "val_accuracy,training_iteration\n" + "".join(f"{i / 10},{i}\n" for i in range(1, n + 1))
    for tid, n in (("a1", 4), ("b2", 3), ("c3", 1)):
        trial = root.child(f"exp_{tid}")
        trial.child("params.json").write_json({"lr": 0.1})
        trial.child("result.json").write_text(rows(tid, n))
        trial.child("progress.csv").write_text(csv_rows(n))
        trial.child(f"checkpoint_00000{n - 1}", "state.bin").write_bytes(b"x" * 10)
    for tid in ("a1", "b2", "c3"):
        root.child(f"exp_{tid}", "wandb", "offline-run-1", f"run-{tid}.wandb").write_bytes(b"records")
    root.child("exp_d4", "checkpoint_000000", "state.bin").write_bytes(b"x" * 10)
    root.child("notes", "todo.txt").write_text("mine")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_trial_folders_newer_than_tunes_saved_state_are_settled_before_resume(where, s3, tmp_path):
    from hpo.tune.settle import settle

    root = Location.parse(tmp_path / "exp") if where == "local" else Location.parse(f"s3://sweeps/settle-{tmp_path.name}/exp")
    _planted_experiment(root)
    done = settle(root)
    assert done.orphans == ["exp_c3", "exp_d4"] and done.cut == {"a1": 2}
    assert not root.child("exp_c3").exists() and not root.child("exp_d4").exists()
    moved = root.child("hpo", "orphans", "exp_c3")
    assert moved.child("result.json").is_file() and moved.child("wandb", "offline-run-1", "run-c3.wandb").read_bytes() == b"records"
    assert not [f for f in moved.list_files(recursive=True) if "checkpoint_" in f.path], "an orphan's checkpoints are of no use"
    kept = [json.loads(line)["training_iteration"] for line in root.child("exp_a1", "result.json").read_text().splitlines()]
    assert kept == [1, 2], "rounds past the checkpoint Tune resumes from are run again, so they are not kept twice"
    assert root.child("exp_a1", "progress.csv").read_text().splitlines()[1:] == ["0.1,1", "0.2,2"]
    assert len(root.child("exp_b2", "result.json").read_text().splitlines()) == 3  # an ended trial is left as it is
    # a1's run is written again in full by the resumed sweep; the copy holding rounds 3 and 4 is set aside
    assert done.superseded == ["exp_a1"] and not root.child("exp_a1", "wandb").exists()
    assert root.child("hpo", "superseded", "exp_a1", "wandb", "offline-run-1", "run-a1.wandb").read_bytes() == b"records"
    assert root.child("exp_b2", "wandb", "offline-run-1", "run-b2.wandb").is_file()
    assert root.child("notes", "todo.txt").read_text() == "mine"
    again = settle(root)
    assert not again.orphans and not again.cut and not again.superseded

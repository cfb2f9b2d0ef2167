"""Shared fixtures: the offline data, a tiny real sweep (real local Ray, real W&B offline) run once
per test session through the CLI as a user would, and cleanup of every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hpo.core.results import disk_usage
from tests.s3_server import S3Server, free_port  # noqa: F401 (free_port: for the tests)

REPO = Path(__file__).resolve().parents[1]
IMDB = REPO / "data" / "imdb-sample"


# Tests that run real sweeps (through these fixtures) are the slow tier: `pytest -m "not slow"` leaves them
# out and still touches every module (tests/test_journey.py runs one 2-trial sweep end to end).
SLOW_FIXTURES = {
    "tiny_sweep", "tiny_promoted", "s3", "ray_head", "weak_sweep", "published", "promoted", "executed", "dashboard",
    "tune_experiment", "s3_sweep", "s3_promoted", "pretrained", "dry_run", "sweep", "local_ray",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def start_local_ray(num_cpus: int) -> None:
    """An embedded Ray for a test, started as the driver starts it (one more try past Ray's 30 s start-up
    limit on a busy machine)."""
    from hpo.tune.run import init_ray

    init_ray(None, num_cpus)


TINY_BUDGET_MB = 150  # the tiny model's checkpoint (weights + AdamW state) is about 25 MB


def imdb_files() -> dict[str, str]:
    if not (IMDB / "train.parquet").is_file():
        pytest.fail(f"the offline IMDB sample is missing at {IMDB} (it ships with the repository: data/imdb-sample/)")
    return {"train": str(IMDB / "train.parquet"), "test": str(IMDB / "test.parquet")}


def tiny_spec(storage: Path, name: str = "tiny", **overrides) -> dict:
    """A sweep small enough for CI (about a minute on 2 cores) that still learns something real."""
    spec = {
        "name": name,
        "model": {"offline_preset": {"layers": 1, "dim": 64, "heads": 2, "hidden_dim": 128, "seed": 0}},
        "data": {
            "files": imdb_files(),
            "label_names": ["negative", "positive"],
            "train_size": 2000,
            "test_size": 400,
            "validation_fraction": 0.2,
            "seed": 13,
        },
        "training": {"max_length": 128, "epochs": 3, "rounds_per_epoch": 2, "batch_size": 32, "eval_batch_size": 256},
        "search_space": {
            "learning_rate": {"type": "loguniform", "low": 5.0e-4, "high": 5.0e-3},
            "weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1},
        },
        "searcher": {"type": "tpe", "seed": 0, "n_startup_trials": 3},
        "scheduler": {"type": "asha", "max_rounds": 6, "grace_period": 2, "reduction_factor": 2},
        "budget": {"num_trials": 6, "max_concurrent": 2},
        "resources": {"cpu": 1},
        "tracking": {"project": "hpo-tests", "mode": "offline"},
        "storage": str(storage),
        "checkpoints": {"num_to_keep": 1, "disk_budget_mb": TINY_BUDGET_MB},
        "promotion": {
            "balance": "downsample",
            "finalists": {"top_k": 2, "seeds": 2},
            "gate": {
                "min_test_accuracy": 0.6,
                "min_class_recall": 0.4,
                "sanity_examples": [{"text": "Amazing movie, loved it! Wonderful, brilliant, great acting.", "label": "positive"}],
                # a 1-layer model trained for a minute is not expected to beat TF-IDF; the baseline gate is
                # tested on its own (test_promote)
                "min_lift_over_baseline": -50.0,
            },
        },
    }
    for key, value in overrides.items():
        spec[key] = value
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cli_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WANDB_API_KEY", None)
    env.pop("HF_TOKEN", None)
    env.pop("WANDB_SERVICE", None)  # set once a test used W&B in this process: each CLI run owns its own
    env.update(
        HPO_CACHE=str(tmp / "cache"),
        WANDB_SILENT="true",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def start_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start ``hpo ARGS`` in its own session (finish it with ``finish_cli``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def kill_pids(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def finish_cli(proc: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    """Wait for ``proc``; afterwards kill anything it left (Ray daemons) by pid."""
    children: set[int] = set()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        children.update(_descendants(proc.pid))
        proc.kill()
        out, _ = proc.communicate()
    finally:
        children.update(_descendants(proc.pid))
        kill_pids(children)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return finish_cli(start_cli(args, env, cwd), timeout)


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> dict:
    """One real sweep for the whole session: 6 trials, ASHA, TPE, W&B offline."""
    tmp = tmp_path_factory.mktemp("sweep")
    spec_file = write_spec(tmp / "tiny.yaml", tiny_spec(tmp / "runs"))
    env = cli_env(tmp)
    path = tmp / "runs" / "tiny"
    proc = start_cli(["sweep", str(spec_file)], env, tmp)
    peak = 0
    while proc.poll() is None:  # the sweep folder's largest size while it runs (the disk budget)
        peak = max(peak, disk_usage(path))
        time.sleep(0.25)
    result = finish_cli(proc)
    assert result.returncode == 0, result.stdout[-6000:]
    return {"path": path, "stdout": result.stdout, "env": env, "tmp": tmp, "spec_file": spec_file, "peak_bytes": peak}


@pytest.fixture(scope="session")
def tiny_promoted(tiny_sweep) -> dict:
    """The tiny sweep promoted in dry-run once for the session (finalists, retrain, evidence, card), shared
    by the tests that only read what it wrote."""
    out = tiny_sweep["tmp"] / "promoted"
    result = run_cli(["promote", str(tiny_sweep["path"]), "--dry-run", str(out)], tiny_sweep["env"], tiny_sweep["tmp"], timeout=1800)
    assert result.returncode == 0, result.stdout[-5000:]
    return {"dir": out, "stdout": result.stdout, "provenance": json.loads((out / "provenance.json").read_text())}


# ------------------------------------------------------------------------------- object storage
S3_BUCKETS = ("sweeps", "data")


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> dict:
    """A real S3 API for the session: moto's server on 127.0.0.1 (tests/s3_server.py), with the buckets
    ``sweeps`` and ``data`` (the IMDB sample uploaded to ``s3://data/imdb/``). ``env`` is what every node and
    client needs: dummy credentials and the endpoint, as a user of MinIO or Ceph would set them."""
    import pyarrow.fs

    tmp = tmp_path_factory.mktemp("s3")
    with S3Server(tmp) as server:
        fs = server.filesystem()
        for bucket in S3_BUCKETS:
            fs.create_dir(bucket)
        for split, path in imdb_files().items():
            pyarrow.fs.copy_files(path, f"data/imdb/{split}.parquet", destination_filesystem=fs)
        yield {"endpoint": server.endpoint, "port": server.port, "env": server.env, "fs": fs, "tmp": tmp, "server": server}


def s3_env(tmp: Path, s3: dict) -> dict[str, str]:
    return {**cli_env(tmp), **s3["env"]}

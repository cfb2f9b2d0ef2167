"""The GPU check (benchmarks/gpu.py) and what it relies on: the trainables run on a machine with torch,
transformers, pyarrow, numpy, pydantic and PyYAML only. Here Ray, Optuna, W&B and datasets are installed, so
they are blocked in the child processes: each sees them as missing (``sys.modules[name] = None``, what Python
does for a module that cannot be imported, and a finder that refuses their submodules)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BLOCKED = ("ray", "optuna", "wandb", "datasets")

SITECUSTOMIZE = f'''
import importlib.abc
import sys

BLOCKED = {BLOCKED!r}


class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Missing())
for name in BLOCKED:
    sys.modules[name] = None
'''


def _env(tmp: Path) -> dict[str, str]:
    """Every Python process started with this environment, the spawned ones included, lacks BLOCKED."""
    site = tmp / "blocked-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "HF_TOKEN")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), HPO_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _python(code_or_args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_trainable_and_its_settings_import_without_ray_optuna_wandb_or_datasets(tmp_path):
    code = (
        "import importlib.util\n"
        "for name in ('ray', 'ray.tune', 'optuna', 'wandb', 'datasets'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(f'{name} was not blocked')\n"
        "assert importlib.util.find_spec('datasets') is None  # what transformers' availability checks see\n"
        "import trainables.trial, trainables.settings, trainables.training, trainables.data, trainables.model, trainables.report\n"
        "from trainables.trial import run_trial, train_trial\n"
        "from trainables.settings import TrialSettings\n"
        "print('imported')\n"
    )
    result = _python(["-c", code], _env(tmp_path), timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "imported", result.stderr[-3000:]


def test_the_gpu_checks_cpu_smoke_runs_the_trials_code_without_them(tmp_path):
    """Throughput (fp32, bf16, compile, the padded Trainer), packing (1 and 2 processes) and the planted
    out-of-memory trial, with the vocabulary from a copied file, in processes that lack Ray, Optuna, W&B and datasets."""
    from trainables.model import offline_vocab_file

    vocab = tmp_path / "vocab.txt"
    shutil.copy(offline_vocab_file(), vocab)
    out = tmp_path / "out"
    result = _python(["-m", "benchmarks.gpu", "--cpu-smoke", "--out", str(out), "--vocab", str(vocab)], _env(tmp_path), timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    p = json.loads((out / "gpu-cpu-smoke.json").read_text())
    assert p["settings"]["vocab"] == str(vocab)
    assert set(p["throughput"]) == {"32", "64"}
    for length, sides in p["throughput"].items():
        assert set(sides) == {"fp32", "bf16", "bf16_compile", "padded"}, length
        for side, r in sides.items():
            assert r["samples_per_s"]["median"] > 0 and r["flops_real_tokens"] > 0, (length, side)
            assert all(loss == loss for loss in r["train_loss"]), (length, side)  # not NaN
        assert sides["padded"]["padded_tokens"] == 64 * int(length) >= sides["padded"]["real_tokens"]
    assert set(p["packing"]["runs"]) == {"1", "2"}
    for n, run in p["packing"]["runs"].items():
        assert len(run["processes"]) == int(n) and all(q["samples"] > 0 for q in run["processes"])
        assert run["aggregate_samples_per_s"] > 0
    oom = p["out_of_memory"]
    assert oom["failure"] == "out of GPU memory at batch_size 1024, max_length 64: lower training.batch_size or training.max_length (or their ranges in search_space)"
    assert [r["round"] for r in oom["reports"]] == [1]
    assert oom["next"]["failure"] is None and 0 <= oom["next"]["val_accuracy"] <= 1  # the same process trained the next configuration
    table = (out / "gpu-cpu-smoke.md").read_text()
    assert "| 64 | Trainer, padding=\"max_length\", bf16 |" in table and "**Out of memory**" in table
    assert "python -m benchmarks.gpu --cpu-smoke" in table


def test_a_vocabulary_file_that_is_not_the_uncased_one_is_refused_by_name(tmp_path):
    from benchmarks._common import BenchError
    from benchmarks.gpu import vocab_file

    wrong = tmp_path / "vocab.txt"
    wrong.write_text("[PAD]\n[UNK]\n")
    with pytest.raises(BenchError, match=f"{wrong}: not the distilbert-base-uncased vocabulary .*--vocab FILE"):
        vocab_file(wrong)

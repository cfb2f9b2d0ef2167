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
    g = p["goals"]
    assert g["mfu_bf16_longest"] == {"length": "64", "value": None, "goal": 0.35, "met": None}  # a CPU has no bf16 peak
    for key in ("bf16_over_fp32", "ours_over_padded"):
        assert set(g[key]["by_length"]) == {"32", "64"} and all(v > 0 for v in g[key]["by_length"].values()), key
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


def test_the_peak_is_looked_up_by_the_device_name_with_its_datasheet():
    from benchmarks._mfu import peak_bf16

    assert peak_bf16("NVIDIA H200") == (989.0, "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM)")
    assert peak_bf16("NVIDIA H100 80GB HBM3")[0] == 989.0 and peak_bf16("NVIDIA H100 PCIe")[0] == 756.0
    assert peak_bf16("NVIDIA H200 NVL")[0] == 835.0 and peak_bf16("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert peak_bf16("NVIDIA L40S")[0] == 362.0 and peak_bf16("NVIDIA L4")[0] == 121.0 and peak_bf16("NVIDIA A10G")[0] == 70.0
    assert peak_bf16("Tesla T4") is None


def test_the_goals_are_read_from_the_bf16_row_at_the_longest_length():
    from benchmarks.gpu import goals

    def side(samples_per_s, mfu=None):
        return {"samples_per_s": {"median": samples_per_s}, "mfu": mfu}

    tp = {
        "128": {"fp32": side(100.0), "bf16": side(150.0, 0.20), "bf16_compile": side(400.0, 0.6), "padded": side(140.0)},
        "512": {"fp32": side(40.0), "bf16": side(120.0, 0.36), "bf16_compile": side(200.0, 0.6), "padded": side(70.0)},
    }
    g = goals(tp)
    assert g["mfu_bf16_longest"] == {"length": "512", "value": 0.36, "goal": 0.35, "met": True}
    assert g["bf16_over_fp32"] == {"by_length": {"128": 1.5, "512": 3.0}, "goal": 2.0, "met_at_longest": True}
    assert g["ours_over_padded"]["by_length"]["512"] == pytest.approx(120 / 70) and g["ours_over_padded"]["met_at_longest"] is False
    tp["512"]["padded"] = {"skipped": "transformers.Trainer needs accelerate"}
    assert goals(tp)["ours_over_padded"]["met_at_longest"] is None

"""The new model against the one already on the Hub, on a Hub server on loopback: a weak model is
published first (a real one-trial, one-round sweep promoted with its gate off), the tiny sweep's better
winner replaces it, and the weak one is then refused (exit 3) without touching the repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import cli_env, run_cli, tiny_spec, write_spec
from tests.hub_server import start_hub, stop_hub
from tests.test_promote import hub_env

REPO = "acme/imdb-sentiment"


SLOW = 1800  # a promotion retrains (and runs finalists): minutes on a busy 2-core machine

@pytest.fixture(scope="module")
def hub():
    hub = start_hub(token="hf_secret_champion_token_9")
    yield hub
    stop_hub(hub)
    assert not hub.errors, hub.errors


@pytest.fixture(scope="module")
def weak_sweep(tmp_path_factory) -> dict:
    """A deliberately weak model's sweep: one trial, one round, a learning rate near zero; gate off,
    finalists off (it is only there to be published first, and to lose later)."""
    tmp = tmp_path_factory.mktemp("weak")
    spec = tiny_spec(
        tmp / "runs",
        name="weak",
        budget={"num_trials": 1, "max_concurrent": 1},
        scheduler={"type": "fifo", "max_rounds": 1, "grace_period": 1},
        search_space={"learning_rate": {"type": "loguniform", "low": 1.0e-6, "high": 2.0e-6}},
    )
    spec["promotion"]["gate"]["enabled"] = False
    spec["promotion"]["finalists"] = {"top_k": 1, "seeds": 1}
    env = cli_env(tmp)
    result = run_cli(["sweep", str(write_spec(tmp / "weak.yaml", spec))], env, tmp, timeout=SLOW)
    assert result.returncode == 0, result.stdout[-4000:]
    return {"path": tmp / "runs" / "weak", "env": env, "tmp": tmp}


@pytest.fixture(scope="module")
def published(weak_sweep, tiny_sweep, hub) -> dict:
    """The weak model published to an empty repo, then the tiny sweep's winner over it."""
    first = run_cli(["promote", str(weak_sweep["path"]), "--repo-id", REPO], hub_env(weak_sweep["env"], hub), weak_sweep["tmp"], timeout=SLOW)
    assert first.returncode == 0, first.stdout[-4000:]
    assert "does not exist yet: nothing to compare with" in first.stdout
    weak_commit = hub.repos()[REPO].head
    second = run_cli(["promote", str(tiny_sweep["path"]), "--repo-id", REPO], hub_env(tiny_sweep["env"], hub), tiny_sweep["tmp"], timeout=SLOW)
    assert second.returncode == 0, second.stdout[-4000:]
    return {"weak_commit": weak_commit, "first": first.stdout, "second": second.stdout, "head": hub.repos()[REPO].head}


def _printed(stdout: str, key: str) -> str:
    line = next(line for line in stdout.splitlines() if line.strip().startswith(key))
    return line.strip()[len(key) :].strip()


def test_a_better_model_replaces_the_champion_with_the_comparison_printed(published, tiny_sweep, hub):
    out = published["second"]
    # the test split as the sweep stored it (after texts also seen in training were dropped)
    test_texts = sum(json.loads((tiny_sweep["path"] / "hpo" / "data.json").read_text())["class_counts"]["test"].values())
    assert f"new model vs {REPO}@{published['weak_commit'][:12]}" in out
    old, new = float(_printed(out, "accuracy, old model")), float(_printed(out, "accuracy, new model"))
    assert new > old
    assert "rule not_worse" in out and "pass" in _printed(out, "rule not_worse")
    assert _printed(out, "test examples (paired)") == str(test_texts)
    p = float(_printed(out, "McNemar exact p"))
    assert 0 <= p < 0.05  # a one-round, near-zero learning rate model against a trained one
    repo = hub.repos()[REPO]
    assert [c.title for c in repo.commits][-1] != "initial commit" and repo.head != published["weak_commit"]
    # the card and provenance on the Hub record the previous revision, its score and the difference
    files = hub.files(REPO, repo.head)
    card = files["README.md"].decode()
    assert "## Compared with the previous model" in card and published["weak_commit"] in card
    prov = json.loads(files["provenance.json"])["previous_model"]
    assert prov["revision"] == published["weak_commit"] and prov["rule"] == "not_worse" and prov["passed"] is True
    assert prov["accuracy_b"] == pytest.approx(old, abs=1e-4) and prov["accuracy_a"] == pytest.approx(new, abs=1e-4)
    assert prov["difference"] == pytest.approx(new - old, abs=1e-4)
    assert prov["low"] <= prov["difference"] <= prov["high"]
    assert prov["only_a"] - prov["only_b"] == round(prov["difference"] * prov["n"])


def test_a_worse_model_is_refused_with_exit_3_and_nothing_pushed(published, weak_sweep, hub):
    before = hub.repos()[REPO]
    result = run_cli(["promote", str(weak_sweep["path"]), "--repo-id", REPO], hub_env(weak_sweep["env"], hub), weak_sweep["tmp"], timeout=SLOW)
    assert result.returncode == 3, result.stdout[-4000:]
    assert "reusing the retrained model" in result.stdout
    assert "FAIL" in _printed(result.stdout, "rule not_worse")
    assert "nothing published" in result.stdout and f"stays at revision {before.head[:12]}" in result.stdout
    assert "Traceback" not in result.stdout
    after = hub.repos()[REPO]
    assert after.head == before.head == published["head"]
    assert [c.oid for c in after.commits] == [c.oid for c in before.commits]


def test_a_rerun_of_the_published_model_is_not_compared_with_itself(published, tiny_sweep, hub):
    """Rerunning the same promotion (e.g. after a failed verification) must not be refused by the
    comparison: the repo already holds exactly this model."""
    sweep = tiny_sweep["tmp"] / "rerun-champion"
    shutil.copytree(tiny_sweep["path"], sweep, ignore=shutil.ignore_patterns("wandb", "published-*", "champion-*"))
    spec_file = sweep / "hpo" / "spec.yaml"
    spec_file.write_text(spec_file.read_text().replace("require_improvement: not_worse", "require_improvement: significant"))
    result = run_cli(["promote", str(sweep), "--repo-id", REPO], hub_env(tiny_sweep["env"], hub), tiny_sweep["tmp"], timeout=SLOW)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "the repo already holds this exact model" in result.stdout


def test_a_champion_with_other_labels_is_refused(published, weak_sweep, hub, tmp_path):
    """The comparison reads each model's labels through its own id2label: the same model with its class
    ids swapped scores identically; a model with other label names is refused (exit 3, nothing pushed)."""
    import torch
    from safetensors.torch import load_file, save_file

    from hpo.promotion.champion import LabelMismatch, outcomes_on_test
    from hpo.core.results import load_sweep
    from trainables.data import load_splits

    own = hub.files(REPO, hub.repos()[REPO].head)
    model = tmp_path / "model"
    model.mkdir()
    for name, data in own.items():
        (model / name).write_bytes(data)
    splits = load_splits(load_sweep(weak_sweep["path"]).spec.data)
    reference = outcomes_on_test(model, splits)

    swapped = tmp_path / "swapped"  # the same classifier with its two class ids exchanged
    shutil.copytree(model, swapped)
    weights = load_file(swapped / "model.safetensors")
    for key in ("classifier.weight", "classifier.bias"):
        weights[key] = torch.flip(weights[key], dims=[0]).contiguous()
    save_file(weights, swapped / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((swapped / "config.json").read_text())
    config["id2label"] = {"0": "positive", "1": "negative"}
    config["label2id"] = {"positive": 0, "negative": 1}
    (swapped / "config.json").write_text(json.dumps(config))
    assert np.array_equal(outcomes_on_test(swapped, splits), reference)

    other = tmp_path / "other"
    shutil.copytree(model, other)
    config["id2label"], config["label2id"] = {"0": "bad", "1": "good"}, {"bad": 0, "good": 1}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(LabelMismatch):
        outcomes_on_test(other, splits)

    # huggingface_hub reads HF_ENDPOINT when it is imported: upload from a process of its own
    upload = f"from huggingface_hub import HfApi; api = HfApi(); api.create_repo('acme/other-labels'); api.upload_folder(folder_path={str(other)!r}, repo_id='acme/other-labels')"
    done = subprocess.run([sys.executable, "-c", upload], env=hub_env(weak_sweep["env"], hub), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    before = hub.repos()["acme/other-labels"].head
    result = run_cli(["promote", str(weak_sweep["path"]), "--repo-id", "acme/other-labels"], hub_env(weak_sweep["env"], hub), weak_sweep["tmp"], timeout=SLOW)
    assert result.returncode == 3, result.stdout[-3000:]
    assert "cannot be compared" in result.stdout and "['bad', 'good']" in result.stdout
    assert "require_improvement: none" in result.stdout  # what to do about it
    assert hub.repos()["acme/other-labels"].head == before

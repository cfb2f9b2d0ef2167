"""Promotion on a real finished sweep: dry run, publish to a Hub server on loopback, gates, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpo.core.results import load_sweep
from tests.conftest import imdb_files, run_cli
from tests.hub_server import start_hub, stop_hub
from tests.test_wandb_story import assert_trial_runs_tell_the_sweep
from tests.wandb_records import read_run

RELEASE = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md", "provenance.json"}


@pytest.fixture(scope="module")
def hub():
    hub = start_hub(token="hf_secret_test_token_123")
    yield hub
    stop_hub(hub)
    assert not hub.errors, hub.errors


def hub_env(base: dict, hub, token: bool = True) -> dict:
    env = {**base, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"}
    env["HF_HOME"] = str(Path(base["HPO_CACHE"]).parent / "hf-home")
    if token:
        env["HF_TOKEN"] = hub.token
    return env


@pytest.fixture(scope="module")
def dry_run(tiny_promoted):
    return tiny_promoted


def test_dry_run_writes_exactly_the_release_files(dry_run):
    assert {p.name for p in dry_run["dir"].iterdir()} == RELEASE


def test_dry_run_model_labels_the_test_set_through_the_pipeline_with_names(dry_run):
    from transformers import pipeline

    test = pd.read_parquet(imdb_files()["test"]).sample(200, random_state=0)
    clf = pipeline("text-classification", model=str(dry_run["dir"]), device="cpu")
    out = clf(test.text.tolist(), truncation=True, batch_size=64)
    labels = {o["label"] for o in out}
    assert labels <= {"negative", "positive"} and not any(lbl.startswith("LABEL_") for lbl in labels)
    truth = test.label.map({0: "negative", 1: "positive"}).tolist()
    accuracy = np.mean([o["label"] == t for o, t in zip(out, truth)])
    assert accuracy > 0.6, accuracy
    config = json.loads((dry_run["dir"] / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_dry_run_reports_metrics_gates_and_identical_verification(dry_run):
    out = dry_run["stdout"]
    assert "winner rule" in out and "winner:" in out
    assert "gates:" in out and "FAIL" not in out
    assert "local vs published" in out and "DIFFERENT" not in out
    assert "verified: the published copy's test metrics are identical" in out


def test_card_and_provenance(dry_run, tiny_sweep):
    card = (dry_run["dir"] / "README.md").read_text()
    meta = card.split("---")[1]
    for key in ("license: apache-2.0", "pipeline_tag: text-classification", "model-index", "type: accuracy"):
        assert key in meta
    for text in ("trials run", "stopped early by ASHA", "Search space", "Best configuration", "Confusion matrix", "Data balance", "hpo promote"):
        assert text in card
    prov = json.loads((dry_run["dir"] / "provenance.json").read_text())
    data = json.loads((tiny_sweep["path"] / "hpo" / "data.json").read_text())
    assert prov["data"]["fingerprint"] == data["fingerprint"]
    assert prov["spec"]["name"] == "tiny" and prov["best_trial"]["config"]
    assert {"training", "data", "searcher"} <= set(prov["seeds"])
    assert {"torch", "transformers", "ray"} <= set(prov["versions"])
    assert prov["data"]["promotion_balance"]["after"]["negative"] == prov["data"]["promotion_balance"]["after"]["positive"]


def test_promotion_is_logged_to_wandb_in_the_sweep_group(dry_run, tiny_sweep):
    files = list((tiny_sweep["path"] / "hpo" / "promotion" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert files
    runs = [read_run(f) for f in files]
    # the tiny sweep is shared by the session: other tests may have promoted it to a Hub too; this run is
    # the one whose model artifact refers to the dry run's files
    here = dry_run["dir"].resolve().as_uri() + "/"  # not the "promoted-*" folders of other tests
    (run,) = [r for r in runs if r.job_type == "promotion" and any(ref.startswith(here) for m in r.logged for ref in m["references"].values())]
    assert run.group == "tiny"
    assert "test_accuracy" in run.summary
    # lineage: the promotion uses the sweep's dataset artifact and produces the model, a reference to
    # the dry run's files (not a copy)
    sweep = load_sweep(tiny_sweep["path"])
    winner = sweep.winner(ended_only=True)[0]
    assert [(a["name"], a["type"]) for a in run.used] == [(f"data-{sweep.data['fingerprint'][:16]}", "dataset")]
    (model,) = run.logged
    assert model["type"] == "model" and model["name"] == "tiny-model"
    assert model["metadata"]["trial_id"] == winner.trial_id and model["metadata"]["fingerprint"] == sweep.data["fingerprint"]
    assert "test_accuracy" in model["metadata"]
    assert set(model["references"]) == {p.name for p in dry_run["dir"].iterdir()}
    assert all(ref.startswith(dry_run["dir"].resolve().as_uri()) for ref in model["references"].values())
    # the winner's run, written again whole with the winner tag: as synced, every trial still tells its
    # best value, round and outcome, and the winner is tagged
    assert {r.run_id for r in runs if r.job_type == "trial"} == {winner.trial_id}  # one per promotion that ran
    assert_trial_runs_tell_the_sweep(tiny_sweep["path"], winner=winner.trial_id, extra=files)


def test_publish_to_the_hub_and_verify(dry_run, tiny_sweep, hub):
    env = hub_env(tiny_sweep["env"], hub)
    result = run_cli(["promote", str(tiny_sweep["path"]), "--repo-id", "acme/tiny-imdb", "--private"], env, tiny_sweep["tmp"])
    assert result.returncode == 0, result.stdout[-5000:]
    assert "reusing the retrained model" in result.stdout  # no second retrain
    repo = hub.repos()["acme/tiny-imdb"]
    assert repo.private
    assert len(repo.commits) == 2  # the repo's initial commit + ours: one commit for all files
    published = hub.files("acme/tiny-imdb", repo.head)
    assert RELEASE <= set(published)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert published[name] == (dry_run["dir"] / name).read_bytes()
    assert repo.head in result.stdout and "verified" in result.stdout and "DIFFERENT" not in result.stdout
    # the token is never written anywhere: not in the uploaded files, the outputs, the sweep folder
    secret = hub.token.encode()
    assert not any(secret in data for data in published.values())
    assert hub.token not in result.stdout
    for path in tiny_sweep["path"].rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert secret not in path.read_bytes(), path


def test_malformed_repo_id_and_missing_token_fail_before_training(tiny_sweep, hub):
    bad = run_cli(["promote", str(tiny_sweep["path"]), "--repo-id", "no-owner"], hub_env(tiny_sweep["env"], hub), tiny_sweep["tmp"], timeout=60)
    assert bad.returncode == 2 and "is not a Hub repo id" in bad.stdout and "Traceback" not in bad.stdout
    env = hub_env(tiny_sweep["env"], hub, token=False)
    none = run_cli(["promote", str(tiny_sweep["path"]), "--repo-id", "acme/x"], env, tiny_sweep["tmp"], timeout=60)
    assert none.returncode == 1 and "no Hugging Face token" in none.stdout
    assert "retraining" not in none.stdout


def _copy_sweep(tiny_sweep, name: str, **gate) -> Path:
    import yaml

    target = tiny_sweep["tmp"] / name
    shutil.copytree(tiny_sweep["path"], target, ignore=shutil.ignore_patterns("wandb", "published-*"))
    spec_file = target / "hpo" / "spec.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["promotion"]["gate"].update(gate)
    spec_file.write_text(yaml.safe_dump(spec))
    return target


def test_hub_error_mid_upload_publishes_nothing_and_a_retry_does_not_retrain(dry_run, tiny_sweep, hub):
    sweep = _copy_sweep(tiny_sweep, "flaky")
    env = hub_env(tiny_sweep["env"], hub)
    hub.fail_next_commit(status=500, times=4)  # more than the retries: the upload fails
    first = run_cli(["promote", str(sweep), "--repo-id", "acme/flaky"], env, tiny_sweep["tmp"])
    assert first.returncode == 1, first.stdout[-3000:]
    assert first.stdout.count("retrying in") == 3
    assert "nothing was published" in first.stdout and "rerun the same command" in first.stdout
    repo = hub.repos()["acme/flaky"]
    assert [c.title for c in repo.commits] == ["initial commit"]
    second = run_cli(["promote", str(sweep), "--repo-id", "acme/flaky"], env, tiny_sweep["tmp"])
    assert second.returncode == 0, second.stdout[-3000:]
    assert "reusing the retrained model" in second.stdout and "verified" in second.stdout


def test_a_hub_answering_503_twice_is_asked_again_and_the_model_published(dry_run, tiny_sweep, hub):
    sweep = _copy_sweep(tiny_sweep, "busy")
    hub.fail_next_commit(status=503, times=2)
    result = run_cli(["promote", str(sweep), "--repo-id", "acme/busy"], hub_env(tiny_sweep["env"], hub), tiny_sweep["tmp"])
    assert result.returncode == 0, result.stdout[-3000:]
    lines = [line for line in result.stdout.splitlines() if "retrying in" in line]
    assert len(lines) == 2 and all("the commit to acme/busy" in line and "503" in line for line in lines), lines
    assert "(attempt 2 of 4)" in lines[0] and "(attempt 3 of 4)" in lines[1]
    assert [c.title for c in hub.repos()["acme/busy"].commits][-1] == "hpo promote: retrained sweep winner"
    assert "verified" in result.stdout


def test_failed_gate_publishes_nothing_and_exits_3(dry_run, tiny_sweep, hub):
    sweep = _copy_sweep(tiny_sweep, "strict", min_test_accuracy=0.999)
    env = hub_env(tiny_sweep["env"], hub)
    result = run_cli(["promote", str(sweep), "--repo-id", "acme/strict"], env, tiny_sweep["tmp"])
    assert result.returncode == 3, result.stdout[-3000:]
    assert "gate failed, nothing published" in result.stdout and ">= 0.999" in result.stdout
    assert "acme/strict" not in hub.repos()


def test_gate_refuses_a_collapsed_model(dry_run, tiny_sweep, tmp_path):
    """A model that says 'negative' to everything never passes, whatever its accuracy."""
    import torch
    from safetensors.torch import load_file, save_file

    from hpo.promotion.gates import Measured, run_gates
    from hpo.promotion.promote import evaluate_folder
    from hpo.core.results import load_sweep

    collapsed = tmp_path / "collapsed"
    shutil.copytree(dry_run["dir"], collapsed)
    weights = load_file(collapsed / "model.safetensors")
    weights["classifier.weight"] = torch.zeros_like(weights["classifier.weight"])
    weights["classifier.bias"] = torch.tensor([5.0, -5.0])
    save_file(weights, collapsed / "model.safetensors", metadata={"format": "pt"})
    sweep = load_sweep(tiny_sweep["path"])
    marker = json.loads((tiny_sweep["path"] / "hpo" / "promotion" / "model" / "promotion.json").read_text())
    from trainables.data import load_splits

    metrics = evaluate_folder(collapsed, load_splits(sweep.spec.data), marker["training"])
    assert metrics["test_recall_positive"] == 0.0
    gates = {name: ok for name, _, ok in run_gates(Measured(collapsed, metrics, sweep.spec.data.label_names, {}), sweep.spec.promotion.gate)}
    assert gates["recall of positive"] is False
    assert not all(gates.values())


def test_a_corrupt_kept_model_is_retrained_not_published(dry_run, tiny_sweep):
    sweep = _copy_sweep(tiny_sweep, "corrupt")
    weights = sweep / "hpo" / "promotion" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a crash mid-write
    out = tiny_sweep["tmp"] / "corrupt-promoted"
    result = run_cli(["promote", str(sweep), "--dry-run", str(out)], tiny_sweep["env"], tiny_sweep["tmp"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "the kept model is unreadable" in result.stdout and "retraining" in result.stdout
    assert (out / "model.safetensors").stat().st_size > 1_000_000


def test_a_sweep_with_no_ended_trial_is_refused(tiny_sweep):
    sweep = _copy_sweep(tiny_sweep, "unfinished")
    for state in sweep.glob("experiment_state-*.json"):  # as if every trial were still running
        state.write_text(state.read_text().replace('\\"status\\": \\"TERMINATED\\"', '\\"status\\": \\"RUNNING\\"').replace('"status": "TERMINATED"', '"status": "RUNNING"'))
    result = run_cli(["promote", str(sweep), "--dry-run", str(tiny_sweep["tmp"] / "x")], tiny_sweep["env"], tiny_sweep["tmp"], timeout=120)
    assert result.returncode == 1 and "no trial ended" in result.stdout, result.stdout[-2000:]
    assert "retraining" not in result.stdout


def test_dry_run_prints_and_the_card_carries_baselines_leakage_calibration_latency_and_cost(dry_run, tiny_sweep):
    out = dry_run["stdout"]
    prov = json.loads((dry_run["dir"] / "provenance.json").read_text())
    ev, test = prov["evidence"], prov["test_metrics"]
    data = json.loads((tiny_sweep["path"] / "hpo" / "data.json").read_text())
    b = ev["baselines"]
    # the baselines are refitted on the winner's training set and scored on the same test split
    assert b["test_texts"] == sum(data["class_counts"]["test"].values()) == sum(map(sum, test["test_confusion"]))
    assert b["train_texts"] == prov["data"]["promotion_balance"]["after"]["negative"] * 2
    assert b["tfidf"]["C"] == json.loads((tiny_sweep["path"] / "hpo" / "baselines.json").read_text())["tfidf"]["C"]
    assert 0.6 < b["tfidf"]["test_accuracy"] <= 1 and ev["model_accuracy"] == test["test_accuracy"]
    points = (test["test_accuracy"] - b["tfidf"]["test_accuracy"]) * 100
    assert (f"beats the TF-IDF baseline by {points:.2f} points" if points > 0 else f"does NOT beat the TF-IDF baseline ({points:+.2f} points)") in out
    assert "lift over TF-IDF baseline" in out and f"{points:+.2f} points" in out
    # leakage, calibration (ECE recomputed from the stored bins), latency and size, cost
    assert ev["duplicates"] == data["duplicates"] and "duplicates (after normalising" in out
    rel = test["test_reliability"]
    n = sum(rel["count"])
    ece = sum(c / n * abs(a - m) for c, a, m in zip(rel["count"], rel["accuracy"], rel["confidence"]) if c)
    assert rel["bins"] == 15 and n == b["test_texts"] and test["test_ece"] == pytest.approx(ece) and 0 <= test["test_brier"] <= 2
    assert f"expected calibration error {test['test_ece']:.4f} (15 bins), Brier score {test['test_brier']:.4f}" in out
    s = ev["serving"]
    assert 0 < s["batch1_p50_ms"] <= s["batch1_p95_ms"] and s["batch32_texts_per_s"] > 0 and s["hardware"]["device"] == "cpu"
    assert s["weights_mb"] == pytest.approx((dry_run["dir"] / "model.safetensors").stat().st_size / 1e6, abs=0.01)
    assert f"batch 1 p50 {s['batch1_p50_ms']:.1f} ms" in out
    cost = ev["cost"]
    assert cost["trials"] == 6 and cost["trial_seconds"] > 0 and 0 < cost["early_stopping_saved"] < 1
    assert cost["retrain"]["seconds"] > 0 and 0 < cost["retrain"]["share"] < 1 and "retrain:" in out
    card = (dry_run["dir"] / "README.md").read_text()
    for heading in ("## Against baselines", "## Leakage", "## Calibration", "## Latency and size", "## Cost"):
        assert heading in card, heading
    assert f"| {b['tfidf']['test_accuracy']:.4f} |" in card and f"| {test['test_ece']:.4f} |" in card
    assert f"{s['batch1_p50_ms']:.1f} ms / {s['batch1_p95_ms']:.1f} ms" in card and f"| {cost['trial_seconds']:.0f} |" in card


def test_a_model_that_does_not_beat_the_baseline_by_the_minimum_lift_is_refused(dry_run, tiny_sweep):
    sweep = _copy_sweep(tiny_sweep, "lift", min_lift_over_baseline=50.0)  # 50 points above any baseline: impossible
    out = tiny_sweep["tmp"] / "lift-promoted"
    result = run_cli(["promote", str(sweep), "--dry-run", str(out)], tiny_sweep["env"], tiny_sweep["tmp"])
    assert result.returncode == 3, result.stdout[-3000:]
    assert "gate failed, nothing published: lift over TF-IDF baseline:" in result.stdout and ">= 50" in result.stdout
    assert not out.exists()

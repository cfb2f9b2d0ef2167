"""Trials and promotion's retrain on several data-parallel workers (Ray Train's TorchTrainer, gloo on CPU):
the same training as one process, really several processes, and resumable after the driver died."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from hpo.core.errors import SpecError
from hpo.core.results import load_sweep
from hpo.core.spec import OfflinePreset, TrainingSpec, parse_spec
from tests.conftest import (
    _descendants,
    cli_env,
    finish_cli,
    kill_pids,
    run_cli,
    start_cli,
    start_local_ray,
    tiny_spec,
    write_spec,
)
from tests.test_cluster import assert_each_trial_once, rounds_reported, wait_for
from trainables.data import Labelled, SpecialIds, tokenize
from trainables.model import load_classifier, load_tokenizer, preset_dir

SPECIAL = SpecialIds(cls=101, sep=102, pad=0)


def test_resources_name_the_workers_and_refuse_a_gpu_count_that_cannot_be_split(tmp_path):
    def problems(resources):
        with pytest.raises(SpecError) as info:
            parse_spec(tiny_spec(tmp_path, resources=resources), "bad.yaml")
        return "\n".join(info.value.problems)

    assert "resources.gpu: 1.5 GPUs cannot be split over workers" in problems({"gpu": 1.5})
    assert "gpu must be 0 (CPU workers) or 2" in problems({"workers": 2, "gpu": 1})
    sizes = {str(r): parse_spec(tiny_spec(tmp_path, resources=r)).resources.world_size for r in ({"gpu": 2}, {"workers": 3}, {"gpu": 0.5}, {})}
    assert sizes == {"{'gpu': 2}": 2, "{'workers': 3}": 3, "{'gpu': 0.5}": 1, "{}": 1}


@pytest.mark.slow
def test_two_workers_train_exactly_like_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    import ray

    from trainables.parallel import retrain_parallel
    from trainables.training import predict, train_rounds
    from trainables.trial import build_state

    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    source = str(preset_dir(OfflinePreset(layers=1, dim=32, heads=2, hidden_dim=64)))
    tok = load_tokenizer(source)
    texts = [f"{'great wonderful' if i % 2 else 'awful boring'} film number {i} " * (1 + i % 5) for i in range(96)]
    data = tokenize(tok, Labelled(texts, np.array([i % 2 for i in range(96)])), max_length=64)
    # batch 15: shards of 8 and 7 rows, and a last batch of 6; dropout off, so the two runs see the same numbers
    hp = TrainingSpec(batch_size=15, max_length=32, epochs=1, rounds_per_epoch=3, learning_rate=1e-3, seed=1, dropout=0, attention_dropout=0, classifier_dropout=0)
    torch.set_num_threads(1)
    alone = build_state(source, ["neg", "pos"], hp, len(data), 3, torch.device("cpu"))
    expected = [f["train_loss"] for f in train_rounds(alone, hp, data, SPECIAL, 3, torch.device("cpu"))]

    start_local_ray(2)
    try:
        curve = retrain_parallel(source=source, label_names=["neg", "pos"], hp=hp, train=data, special=SPECIAL, rounds=3, schedule_rounds=3,
                                 class_weights=None, out=tmp_path / "model", workers=2, use_gpu=False)
    finally:
        ray.shutdown()
    # The same global batches, loss and optimizer steps; what differs is the order of float additions (two
    # shard sums and gloo's all-reduce against one sum) and each shard's own padding, about 1e-7 per step,
    # which 20 AdamW steps leave far below 1e-4. Averaging the shards' mean losses instead (8 and 7 rows)
    # or training each rank on the whole batch moves the curve by more than 1e-3.
    assert [f["train_loss"] for f in curve] == pytest.approx(expected, rel=1e-4)
    parallel = load_classifier(str(tmp_path / "model"), ["neg", "pos"])
    same = predict(parallel, data, SPECIAL, 32, 64, torch.device("cpu"))
    torch.testing.assert_close(torch.from_numpy(same), torch.from_numpy(predict(alone.model, data, SPECIAL, 32, 64, torch.device("cpu"))), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_a_two_worker_trial_runs_two_processes_and_resumes_after_the_driver_is_killed(tmp_path):
    spec = tiny_spec(tmp_path / "runs", name="ddp")
    spec["data"].update(train_size=600, test_size=100)
    spec["budget"] = {"num_trials": 2, "max_concurrent": 1}
    spec["resources"] = {"cpu": 1, "workers": 2}
    spec["failures"] = {"max_retries": 2}
    spec["scheduler"] = {"type": "fifo", "max_rounds": 4, "grace_period": 1}
    spec["training"].update(epochs=2, rounds_per_epoch=2)
    spec_file = write_spec(tmp_path / "ddp.yaml", spec)
    env, path = cli_env(tmp_path), tmp_path / "runs" / "ddp"
    proc = start_cli(["sweep", str(spec_file)], env, tmp_path)
    try:  # killed while the second trial runs, after it checkpointed a round
        wait_for(lambda: len(rounds_reported(path)) >= 2 and min(len(r) for r in rounds_reported(path).values()) >= 1, 600, proc)
        ray_processes = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kill_pids(ray_processes)
    finally:
        finish_cli(proc, timeout=1)
    result = run_cli(["resume", str(path)], env, tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:]
    assert_each_trial_once(path, 2)
    for trial in load_sweep(path).trials:
        for row in trial.rounds:
            pids = row["worker_pids"].split(",")
            assert row["workers"] == 2 and len(set(pids)) == 2, row  # two processes trained every round
            assert str(row["pid"]) not in pids  # neither is the Tune trial, which only relays
        assert not (path / f"ddp_{trial.trial_id}" / "data-parallel").exists()  # Ray Train's own run folder is gone
    assert any(p.name.startswith("checkpoint_") for p in path.glob("ddp_*/*"))  # Tune keeps the checkpoints, as for one worker


def test_promote_refuses_more_gpus_than_the_machine_has_before_loading_anything(tmp_path):
    result = run_cli(["promote", str(tmp_path / "no-sweep"), "--dry-run", str(tmp_path / "out"), "--gpus", "64"], cli_env(tmp_path), tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout
    assert "--gpus 64: this machine has" in result.stdout and "Traceback" not in result.stdout
    assert not (tmp_path / "out").exists()

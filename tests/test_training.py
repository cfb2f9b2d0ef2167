"""The shared training loop: batching, metrics, and exact resume from a checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hpo.core.spec import OfflinePreset, TrainingSpec
from trainables.data import Labelled, SpecialIds, tokenize
from trainables.model import load_tokenizer, preset_dir
from trainables.trial import build_state, converged, planned_steps
from trainables.training import classification_metrics, collate, epoch_batches, train_rounds

SPECIAL = SpecialIds(cls=101, sep=102, pad=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import os

    os.environ["HPO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    source = str(preset_dir(OfflinePreset(layers=1, dim=32, heads=2, hidden_dim=64)))
    tok = load_tokenizer(source)
    texts = [f"{'great wonderful' if i % 2 else 'awful boring'} film number {i} " * (1 + i % 5) for i in range(96)]
    data = tokenize(tok, Labelled(texts, np.array([i % 2 for i in range(96)])), max_length=64)
    return source, tok, data


def test_preset_tokenizer_is_the_uncased_distilbert_vocabulary(tiny):
    _, tok, _ = tiny
    assert len(tok) == 30522
    assert tok("Hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_collate_adds_special_tokens_truncates_and_pads_per_batch(tiny):
    _, _, data = tiny
    rows = np.array([0, 4])
    batch = collate(data, rows, 16, SPECIAL)
    lengths = data.lengths(16)[rows]
    assert batch["input_ids"].shape == (2, lengths.max())  # padded to the batch, not to 16 or 512
    for j, n in enumerate(lengths):
        ids = batch["input_ids"][j]
        assert ids[0] == 101 and ids[n - 1] == 102 and (ids[n:] == 0).all()
        assert batch["attention_mask"][j].sum() == n


def test_a_batch_without_padding_has_no_mask_and_the_same_logits(tiny):
    source, _, data = tiny
    lengths = data.lengths(64)
    same = np.flatnonzero(lengths == lengths[0])[:3]
    mixed = np.array([same[0], int(np.argmax(lengths != lengths[0]))])
    assert "attention_mask" not in collate(data, same, 64, SPECIAL)
    assert "attention_mask" in collate(data, mixed, 64, SPECIAL)
    torch.manual_seed(0)
    from trainables.model import load_classifier

    model = load_classifier(source, ["neg", "pos"]).eval()
    batch = collate(data, same, 64, SPECIAL)
    with torch.no_grad():
        unmasked = model(input_ids=batch["input_ids"]).logits
        masked = model(input_ids=batch["input_ids"], attention_mask=torch.ones_like(batch["input_ids"])).logits
    torch.testing.assert_close(unmasked, masked)


def test_epoch_batches_cover_every_row_once_and_depend_only_on_seed_and_epoch(tiny):
    _, _, data = tiny
    hp = TrainingSpec(batch_size=8, max_length=32, seed=3)
    b1 = epoch_batches(data, hp, epoch=0)
    assert sorted(np.concatenate(b1).tolist()) == list(range(len(data)))
    assert all(np.array_equal(a, b) for a, b in zip(b1, epoch_batches(data, hp, epoch=0)))
    assert not all(np.array_equal(a, b) for a, b in zip(b1, epoch_batches(data, hp, epoch=1)))


def test_length_grouping_reduces_padding(tiny):
    _, _, data = tiny
    lengths = data.lengths(64)

    def padded(grouping):
        hp = TrainingSpec(batch_size=8, max_length=64, length_grouping=grouping)
        return sum(len(b) * lengths[b].max() for b in epoch_batches(data, hp, 0))

    assert padded(True) < padded(False)


def test_metrics_match_a_hand_computed_confusion_matrix():
    logits = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])
    labels = np.array([0, 0, 1, 0, 1])
    m = classification_metrics(logits, labels, ["neg", "pos"], "test")
    assert m["test_confusion"] == [[2, 1], [1, 1]]
    assert m["test_accuracy"] == pytest.approx(0.6)
    assert m["test_recall_neg"] == pytest.approx(2 / 3) and m["test_recall_pos"] == pytest.approx(0.5)
    assert m["test_precision_neg"] == pytest.approx(2 / 3)
    assert m["test_f1_macro"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert m["test_top_class_share"] == pytest.approx(3 / 5)  # 3 of 5 predicted "neg"


def test_planned_steps_follow_rounds():
    hp = TrainingSpec(batch_size=10, rounds_per_epoch=2)
    assert planned_steps(hp, 95, 4) == 20 and planned_steps(hp, 95, 3) == 15


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(tiny, tmp_path):
    source, _, data = tiny
    torch.set_num_threads(1)
    hp = TrainingSpec(batch_size=16, max_length=32, rounds_per_epoch=2, epochs=2, learning_rate=1e-3, seed=1)
    device = torch.device("cpu")

    straight = build_state(source, ["neg", "pos"], hp, len(data), 4, device)
    losses = [f["train_loss"] for f in train_rounds(straight, hp, data, SPECIAL, 4, device)]

    first = build_state(source, ["neg", "pos"], hp, len(data), 4, device)
    for _, value in zip(range(2), [0.6, 0.55]):
        next(train_rounds(first, hp, data, SPECIAL, 4, device))
        first.note(value, "max")
    first.save(tmp_path)
    resumed = build_state(source, ["neg", "pos"], hp, len(data), 4, device)
    resumed.load(tmp_path)
    assert resumed.rounds_done == 2
    assert (resumed.best_value, resumed.best_round) == (0.6, 1)  # what patience counts from
    rest = [f["train_loss"] for f in train_rounds(resumed, hp, data, SPECIAL, 4, device)]
    assert rest == pytest.approx(losses[2:], rel=1e-5)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)


def _trial_settings(tmp_path, **scheduler):
    """What a trial of a sweep with this scheduler is told (the sweep spec's own translation)."""
    from hpo.core.spec import parse_spec
    from tests.conftest import tiny_spec

    return parse_spec({**tiny_spec(tmp_path), "scheduler": scheduler}).trial_settings()


def test_patience_counts_rounds_without_improvement_from_the_last_rung(tmp_path):
    asha = _trial_settings(tmp_path, max_rounds=12, grace_period=2, reduction_factor=2, patience=3)  # rungs 2, 4, 8
    state = SimpleNamespace(rounds_done=0, best_round=0)
    for done, best, expected in [(7, 3, False), (8, 5, True), (8, 6, False), (11, 8, True), (12, 5, False)]:
        state.rounds_done, state.best_round = done, best
        assert converged(state, asha, 12) is expected, (done, best)
    state.rounds_done, state.best_round = 11, 1
    assert converged(state, asha.model_copy(update={"patience": None}), 12) is False
    fifo = _trial_settings(tmp_path, type="fifo", max_rounds=6, grace_period=1, patience=1)
    state.rounds_done, state.best_round = 2, 1
    assert converged(state, fifo, 6) is True


def test_out_of_gpu_memory_in_a_step_ends_the_trial_as_failed_with_its_reason_and_a_hint(tiny, monkeypatch):
    """torch.cuda.OutOfMemoryError raised by the model's forward in round 2 (as the allocator raises it): the
    trial reports round 1, then one failed report naming the batch and what to lower, and returns (a crash
    would make Tune retry the same config); the sweep reads it as a failed trial with that reason."""
    from hpo.core.results import TrialRecord
    from trainables import trial
    from trainables.data import SweepData
    from trainables.settings import ResourcesSpec, TrialSettings

    source, _, data = tiny
    calls = {"n": 0}
    real = trial.load_classifier

    def classifier_that_runs_out_in_round_2(*args, **kwargs):
        model = real(*args, **kwargs)

        def forward(module, inputs):
            calls["n"] += 1
            if calls["n"] > steps_in_round_1 and module.training:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.register_forward_pre_hook(forward)
        return model

    train, validation = data.select(np.arange(64)), data.select(np.arange(64, 96))
    steps_in_round_1 = 4 + 1  # 64 rows at batch 16, and the evaluation's one forward pass of 32 rows
    settings = TrialSettings(
        name="oom", metric="val_accuracy", mode="max", max_rounds=3,
        training=TrainingSpec(batch_size=16, max_length=32, epochs=3, eval_batch_size=64), resources=ResourcesSpec(gpu=0.25),
    )
    monkeypatch.setattr(trial, "load_classifier", classifier_that_runs_out_in_round_2)
    reports = []
    trial.train_trial({}, settings, SweepData(train, validation, validation, SPECIAL, ["neg", "pos"], 32), source, torch.device("cpu"), None,
                      lambda report, folder: reports.append(report), 0.0)
    assert [r.round for r in reports] == [1, 2]
    assert reports[0].failure is None and np.isfinite(reports[0].metrics["val_accuracy"])
    reason = (
        "out of GPU memory at batch_size 16, max_length 32: lower training.batch_size or training.max_length (or their ranges in "
        "search_space); it shares its GPU with 3 other trial(s) (resources.gpu 0.25): a larger share leaves it more"
    )
    assert reports[1].failure == reason and reports[1].metrics == {"val_accuracy": 0.0}
    rows = [{**r.to_result(), "training_iteration": i} for i, r in enumerate(reports, 1)]
    record = TrialRecord("t1", "oom_t1", None, {}, "TERMINATED", rows)
    assert record.outcome == f"failed: {reason}"
    assert record.best("val_accuracy", "max") == (reports[0].metrics["val_accuracy"], 1)  # the failure's placeholder never counts

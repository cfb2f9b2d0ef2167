"""training.truncation: what a long text keeps (head, tail, head and tail), tokenized once for every strategy
and length of a sweep, and used by batching, evaluation and promotion alike."""

from __future__ import annotations

import copy
import json
import shutil
from itertools import product

import numpy as np
import pytest
import torch

from hpo.core.spec import OfflinePreset, TrainingSpec, parse_spec
from trainables.data import Labelled, SpecialIds, SweepData, Tokenized, head_share, keep, tokenize
from trainables.settings import TRUNCATIONS
from trainables.training import collate, epoch_batches, predict

SPECIAL = SpecialIds(cls=101, sep=102, pad=0)


class PlantedTokenizer:
    """Each word ``wN`` is the token id N: texts whose tokens a test knows. Truncates as a tokenizer does."""

    def __init__(self, side: str = "right"):
        self.truncation_side = side
        self.calls: list[dict] = []

    def __call__(self, texts, add_special_tokens, truncation, max_length, **kwargs):
        self.calls.append({"truncation": truncation, "max_length": max_length, **kwargs})
        rows = [[int(w[1:]) for w in t.split()] for t in texts]
        if truncation:
            rows = [r[:max_length] if self.truncation_side == "right" else r[max(0, len(r) - max_length) :] for r in rows]
        return {"input_ids": rows}


def text(n: int, first: int = 1) -> str:
    return " ".join(f"w{i}" for i in range(first, first + n))


def framed(data: Tokenized, max_length: int, truncation: str) -> list[list[int]]:
    batch = collate(data, np.arange(len(data)), max_length, SPECIAL, truncation)
    lengths = data.lengths(max_length)
    return [batch["input_ids"][j, : lengths[j]].tolist() for j in range(len(data))]


def test_a_20_token_text_at_max_length_10_keeps_its_head_its_tail_or_both_framed_by_the_special_ids():
    data = tokenize(PlantedTokenizer(), Labelled([text(20)], np.array([0])), 10, TRUNCATIONS)
    assert framed(data, 10, "head") == [[101, 1, 2, 3, 4, 5, 6, 7, 8, 102]]
    assert framed(data, 10, "tail") == [[101, 13, 14, 15, 16, 17, 18, 19, 20, 102]]
    # head_tail: a quarter of max_length (10 // 4 = 2) from the start, the other 6 of the 8 from the end
    assert head_share(10) == 2
    assert framed(data, 10, "head_tail") == [[101, 1, 2, 15, 16, 17, 18, 19, 20, 102]]
    # the paper's split at 512: 128 + 382
    long = np.arange(1, 1001)
    kept = keep(long, 512, "head_tail")
    assert len(kept) == 510 and kept[:128].tolist() == list(range(1, 129)) and kept[128:].tolist() == list(range(619, 1001))


def test_short_texts_are_read_whole_under_every_strategy():
    texts = [text(3), text(8, first=50), text(1, first=7)]  # 8 tokens fill max_length 10 exactly
    data = tokenize(PlantedTokenizer(), Labelled(texts, np.array([0, 1, 0])), 10, TRUNCATIONS)
    expected = [[101, 1, 2, 3, 102], [101, *range(50, 58), 102], [101, 7, 102]]
    for how in TRUNCATIONS:
        assert framed(data, 10, how) == expected, how


def test_lengths_are_the_same_under_every_strategy_and_are_those_batched():
    texts = [text(n) for n in (1, 5, 8, 9, 20, 33)]
    data = tokenize(PlantedTokenizer(), Labelled(texts, np.zeros(6, dtype=np.int64)), 10, TRUNCATIONS)
    for max_length in (6, 8, 10):
        want = [min(n, max_length - 2) + 2 for n in (1, 5, 8, 9, 20, 33)]
        assert data.lengths(max_length).tolist() == want
        for how in TRUNCATIONS:
            assert [len(r) for r in framed(data, max_length, how)] == want, (max_length, how)
    # length grouping batches by these lengths: the same batches whatever the strategy
    a = epoch_batches(data, TrainingSpec(batch_size=2, max_length=8, truncation="head"), 0)
    b = epoch_batches(data, TrainingSpec(batch_size=2, max_length=8, truncation="head_tail"), 0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("strategies", [("head",), ("tail",), ("head_tail",), ("head", "tail"), ("head", "head_tail"), TRUNCATIONS])
def test_one_tokenization_serves_every_strategy_and_length_up_to_the_bound(strategies):
    """What is cut from the stored row equals what is cut from the whole text, for every length <= the bound."""
    rng = np.random.default_rng(0)
    counts = [0, 1, 5, 7, 8, 9, 12, 15, 16, 17, 30, *rng.integers(1, 60, 20).tolist()]
    texts = [text(n) if n else "" for n in counts]
    data = tokenize(PlantedTokenizer(), Labelled(texts, np.zeros(len(texts), dtype=np.int64)), 10, strategies)
    assert data.truncations == tuple(t for t in TRUNCATIONS if t in strategies)
    for i, n in enumerate(counts):
        whole = np.arange(1, n + 1)
        for max_length, how in product(range(4, 11), strategies):
            assert data.row(i, max_length, how).tolist() == keep(whole, max_length, how).tolist(), (n, max_length, how)


def test_the_cache_holds_both_ends_only_when_a_strategy_needs_them():
    counts = [3, 8, 12, 16, 17, 40]  # room at bound 10: 8 tokens
    texts = Labelled([text(n) for n in counts], np.zeros(len(counts), dtype=np.int64))
    tok = PlantedTokenizer()
    head = tokenize(tok, texts, 10)
    # the head alone: exactly what was stored before (the tokenizer truncates, nothing more is kept)
    assert tok.calls[-1]["truncation"] is True and tok.calls[-1]["max_length"] == 8
    assert np.diff(head.offsets).tolist() == [3, 8, 8, 8, 8, 8] and head.truncations == ("head",)
    assert head.ids[head.offsets[5] : head.offsets[6]].tolist() == list(range(1, 9))
    tail = tokenize(tok, texts, 10, ("tail",))
    assert np.diff(tail.offsets).tolist() == [3, 8, 8, 8, 8, 8]
    assert tail.ids[tail.offsets[5] : tail.offsets[6]].tolist() == list(range(33, 41))
    # both ends: whole up to twice the room, else the first 8 and the last 8
    both = tokenize(tok, texts, 10, ("head", "head_tail"))
    assert np.diff(both.offsets).tolist() == [3, 8, 12, 16, 16, 16]
    assert both.ids[both.offsets[4] : both.offsets[5]].tolist() == [*range(1, 9), *range(10, 18)]
    assert both.ids[both.offsets[5] : both.offsets[6]].tolist() == [*range(1, 9), *range(33, 41)]
    # a tokenizer saved to truncate on the left (a promoted tail model's) still gives the head when the head is asked
    left = tokenize(PlantedTokenizer("left"), texts, 10)
    assert np.array_equal(left.ids, head.ids) and np.array_equal(left.offsets, head.offsets)


def test_rows_of_one_strategy_are_not_read_as_another():
    data = tokenize(PlantedTokenizer(), Labelled([text(20), text(4)], np.array([0, 1])), 10)
    with pytest.raises(ValueError, match="tokenized for truncation head, not tail"):
        collate(data, np.arange(2), 10, SPECIAL, "tail")
    sweep = SweepData(data, data, data, SPECIAL, ["a", "b"], 10)
    with pytest.raises(ValueError, match="not head_tail"):
        sweep.check(10, "head_tail")
    with pytest.raises(ValueError, match="max_length 10, not 12"):
        sweep.check(12, "head")
    both = tokenize(PlantedTokenizer(), Labelled([text(20), text(4)], np.array([0, 1])), 10, ("head", "head_tail"))
    assert both.select(np.array([1, 0])).truncations == ("head", "head_tail")
    assert Tokenized.concat([both, data]).truncations == ("head",)
    assert framed(Tokenized.concat([both, both]), 10, "head_tail")[2] == [101, 1, 2, 15, 16, 17, 18, 19, 20, 102]


# ------------------------------------------------------------------------------------------------ spec
def _spec(tmp_path, **changes) -> dict:
    from tests.conftest import tiny_spec

    raw = tiny_spec(tmp_path / "runs")
    for key, value in changes.items():
        section, name = key.split("__")
        raw[section] = {**raw[section], name: value}
    return raw


def test_truncation_is_a_searchable_training_setting_with_head_as_default(tmp_path):
    from hpo.core.spec import SEARCHABLE

    assert "truncation" in SEARCHABLE and TrainingSpec().truncation == "head"
    spec = parse_spec(_spec(tmp_path))
    assert spec.truncations() == ("head",) and spec.max_length_bound() == 128
    spec = parse_spec(_spec(tmp_path, training__truncation="tail"))
    assert spec.truncations() == ("tail",)
    spec = parse_spec(_spec(tmp_path, search_space__truncation={"type": "choice", "values": ["head_tail", "head"]}))
    assert spec.truncations() == ("head", "head_tail")
    from hpo.core.space import to_optuna

    assert to_optuna(spec.search_space)["truncation"].choices == ("head_tail", "head")


def test_a_truncation_that_does_not_exist_is_refused_naming_key_value_and_what_is_allowed(tmp_path):
    from hpo.core.errors import SpecError

    with pytest.raises(SpecError) as err:
        parse_spec(_spec(tmp_path, search_space__truncation={"type": "choice", "values": ["head", "middle"]}))
    msg = str(err.value)
    assert "search_space.truncation: value 'middle' is not a valid truncation" in msg and "'head_tail'" in msg
    with pytest.raises(SpecError, match=r"training\.truncation: .*'head', 'tail' or 'head_tail'.*got 'both'"):
        parse_spec(_spec(tmp_path, training__truncation="both"))
    with pytest.raises(SpecError, match="search_space.truncation: value 0.0 is not a valid truncation"):
        parse_spec(_spec(tmp_path, search_space__truncation={"type": "uniform", "low": 0.0, "high": 1.0}))


# ------------------------------------------------------------------------------ a real model and tokenizer
@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny classifier saved as promotion saves one, with the offline DistilBERT tokenizer."""
    import os

    from trainables.model import load_classifier, load_tokenizer, preset_dir

    os.environ["HPO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    source = str(preset_dir(OfflinePreset(layers=1, dim=32, heads=2, hidden_dim=64)))
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    load_classifier(source, ["neg", "pos"]).save_pretrained(folder)
    tok = load_tokenizer(source)
    tok.save_pretrained(folder)
    return folder, tok


REVIEWS = [
    "a short one",
    " ".join(f"word{i}" for i in range(300)) + " and in the end it was simply wonderful",
    "terrible " + "plot " * 40 + "but a fine ending",
]


def test_a_real_tokenizer_cut_once_gives_what_it_gives_each_text_whole(model_folder):
    _, tok = model_folder
    data = tokenize(tok, Labelled(REVIEWS, np.array([0, 1, 0])), 64, TRUNCATIONS)
    for i, review in enumerate(REVIEWS):
        whole = np.array(tok(review, add_special_tokens=False)["input_ids"])
        for max_length, how in product((16, 33, 64), TRUNCATIONS):
            assert data.row(i, max_length, how).tolist() == keep(whole, max_length, how).tolist()
    assert len(tok(REVIEWS[1], add_special_tokens=False)["input_ids"]) > 2 * 62  # kept as its two ends
    assert np.diff(data.offsets)[1] == 2 * 62


def test_a_tail_model_s_saved_tokenizer_truncates_like_training(model_folder, tmp_path):
    from transformers import AutoTokenizer

    from hpo.promotion.champion import _own_truncation
    from hpo.promotion.promote import truncate_as_trained

    tok = copy.deepcopy(model_folder[1])
    truncate_as_trained(tok, TrainingSpec(max_length=16, truncation="tail"))
    tok.save_pretrained(tmp_path / "tail")
    saved = AutoTokenizer.from_pretrained(tmp_path / "tail")
    assert json.loads((tmp_path / "tail" / "tokenizer_config.json").read_text())["truncation_side"] == "left"
    data = tokenize(saved, Labelled([REVIEWS[1]], np.array([1])), 16, ("tail",))
    assert saved(REVIEWS[1], truncation=True)["input_ids"] == framed(data, 16, "tail")[0]  # what a pipeline feeds the model
    assert _own_truncation(tmp_path / "tail", saved) == "tail"
    truncate_as_trained(tok, TrainingSpec(max_length=16, truncation="head_tail"))
    tok.save_pretrained(tmp_path / "head_tail")
    assert "truncation_side" not in json.loads((tmp_path / "head_tail" / "tokenizer_config.json").read_text())
    (tmp_path / "head_tail" / "provenance.json").write_text(json.dumps({"training": {"truncation": "head_tail"}}))
    assert _own_truncation(tmp_path / "head_tail", AutoTokenizer.from_pretrained(tmp_path / "head_tail")) == "head_tail"
    assert _own_truncation(tmp_path, tok) == "head"


def test_the_head_tail_card_reads_a_long_text_as_training_did(model_folder):
    """The lines the card gives a head_tail model's users, run as written, give the logits predict gives."""
    from hpo.promotion.card import truncation_note

    folder, tok = model_folder
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    note = truncation_note({"max_length": 24, "truncation": "head_tail"}, str(folder))
    assert "first 6 and the last 16 tokens of texts longer than 22 tokens" in note
    code = note.split("```python\n")[1].split("```")[0]
    for review in REVIEWS:
        scope = {"text": review}
        exec(code, scope)  # noqa: S102 - the card's own snippet
        data = tokenize(tok, Labelled([review], np.array([0])), 24, ("head_tail",))
        logits = predict(model, data, SPECIAL, 24, 8, torch.device("cpu"), truncation="head_tail")
        torch.testing.assert_close(scope["logits"], torch.from_numpy(logits), atol=1e-5, rtol=1e-5)
        assert scope["label"] == model.config.id2label[int(logits.argmax())]
    assert truncation_note({"max_length": 24, "truncation": "head"}, "x") == "" and truncation_note({"max_length": 24}, "x") == ""
    assert "last 22 tokens" in truncation_note({"max_length": 24, "truncation": "tail"}, "x")


def test_predict_reads_the_strategy_it_is_given(model_folder):
    from transformers import AutoModelForSequenceClassification

    folder, tok = model_folder
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    data = tokenize(tok, Labelled(REVIEWS, np.array([0, 1, 0])), 32, TRUNCATIONS)
    got = {how: predict(model, data, SPECIAL, 32, 8, torch.device("cpu"), truncation=how) for how in TRUNCATIONS}
    for how in TRUNCATIONS:  # the short text is read whole, so alike
        np.testing.assert_allclose(got[how][0], got["head"][0], atol=1e-5)
    assert not np.allclose(got["head"][1], got["tail"][1]) and not np.allclose(got["head"][1], got["head_tail"][1])
    one = tokenize(tok, Labelled(REVIEWS[1:2], np.array([1])), 32, ("head_tail",))
    np.testing.assert_allclose(predict(model, one, SPECIAL, 32, 8, torch.device("cpu"), truncation="head_tail")[0], got["head_tail"][1], atol=1e-5)


# -------------------------------------------------------------------------------------- the real path
def test_a_sweep_searching_truncation_prepares_its_data_once_for_both_and_a_head_tail_trial_trains(tmp_path, monkeypatch):
    """The driver's own preparation (the IMDB sample, the offline tokenizer), then a head_tail trial's body."""
    from hpo.sweep.prepare import prepare
    from trainables import trial

    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    raw = _spec(tmp_path, search_space__truncation={"type": "choice", "values": ["head", "head_tail"]})
    raw["data"] = {**raw["data"], "train_size": 200, "test_size": 100}
    raw["training"] = {**raw["training"], "max_length": 64, "epochs": 1, "rounds_per_epoch": 1}
    spec = parse_spec(raw)
    lines: list[str] = []
    prepared = prepare(spec, lines.append)
    data = prepared.data
    assert data.truncations == ("head", "head_tail") and data.max_length == 64
    assert any("max_length 64, truncation head / head_tail" in line for line in lines)
    stored = np.diff(data.train.offsets)
    assert stored.max() == 2 * 62 and (stored > 62).any()  # long reviews kept at both ends
    whole = tokenize(prepared.tokenizer, prepared.splits.train, 64, ("head_tail",))
    assert framed(data.train, 64, "head_tail") == framed(whole, 64, "head_tail")
    assert framed(data.train, 64, "head") != framed(data.train, 64, "head_tail")
    reports = []
    trial.train_trial({"learning_rate": 1e-3, "truncation": "head_tail"}, spec.trial_settings(), data, prepared.source, torch.device("cpu"), None,
                      lambda report, folder: reports.append(report), 0.0)
    assert [r.round for r in reports] == [1] and reports[0].failure is None and 0 <= reports[0].metrics["val_accuracy"] <= 1


def test_the_model_on_the_hub_is_scored_with_the_truncation_it_records(model_folder, tmp_path, monkeypatch):
    """The champion comparison reads a head_tail model's texts at both ends, as its provenance says."""
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification

    from hpo.promotion.champion import outcomes_on_test
    from trainables import training

    folder, tok = model_folder
    champion = tmp_path / "champion"
    shutil.copytree(folder, champion)
    short = copy.deepcopy(tok)
    short.model_max_length = 24  # as promotion saves it: the length the model was trained at
    short.save_pretrained(champion)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    labels = np.array([0, 1, 0])
    splits = SimpleNamespace(test=Labelled(REVIEWS, labels), label_names=["neg", "pos"])
    seen = []
    real = training.predict
    monkeypatch.setattr(training, "predict", lambda *a, **k: seen.append((a[3], k.get("truncation"))) or real(*a, **k))
    for how in TRUNCATIONS:
        (champion / "provenance.json").write_text(json.dumps({"training": {"truncation": how}}))
        data = tokenize(tok, splits.test, 24, (how,))
        expected = real(model, data, SPECIAL, 24, 8, torch.device("cpu"), truncation=how).argmax(axis=1) == labels
        assert np.array_equal(outcomes_on_test(champion, splits), expected), how
    assert seen == [(24, how) for how in TRUNCATIONS]

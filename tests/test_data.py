"""Data: label-sorted input never yields a one-class sample; labels keep their names; bad data is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpo.core.errors import DataError
from hpo.core.spec import DataSpec, SweepSpec
from tests.conftest import imdb_files, tiny_spec
from trainables.data import (
    Labelled,
    Tokenized,
    balance,
    label_names_of,
    load_splits,
    stratified_indices,
    stratified_sample,
    tokenize,
)


def sorted_labels(n0=500, n1=300):
    return np.array([0] * n0 + [1] * n1)  # negatives first, like the Hub's IMDB


def test_sample_of_label_sorted_data_keeps_both_classes_in_proportion():
    labels = sorted_labels()
    idx = stratified_sample(labels, 80, seed=1)
    assert len(idx) == 80
    assert np.bincount(labels[idx]).tolist() == [50, 30]
    assert not np.array_equal(np.sort(idx), np.arange(80))  # not the first 80 rows


def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = sorted_labels()
    rest, val = stratified_indices(labels, 0.2, seed=3)
    assert set(rest).isdisjoint(val) and len(rest) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [100, 60]
    again = stratified_indices(labels, 0.2, seed=3)[1]
    other = stratified_indices(labels, 0.2, seed=4)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)
    # shuffled: the split is not label-sorted any more
    assert len(set(labels[val[:20]])) == 2


def test_imdb_sample_splits(tmp_path):
    spec = DataSpec(files=imdb_files(), label_names=["negative", "positive"], train_size=1000, test_size=200, seed=5)
    splits = load_splits(spec)
    assert splits.label_names == ["negative", "positive"]
    for split in ("train", "validation", "test"):
        counts = splits.class_counts[split]
        assert min(counts.values()) / max(counts.values()) > 0.9, (split, counts)
    assert len(splits.train) + len(splits.validation) == 1000 and len(splits.test) == 200
    assert set(splits.train.texts).isdisjoint(splits.validation.texts)
    assert len(splits.full_train()) == 1000
    # the same spec gives the same data (fingerprint), another seed does not
    assert load_splits(spec).fingerprint == splits.fingerprint
    assert load_splits(spec.model_copy(update={"seed": 6})).fingerprint != splits.fingerprint


def test_the_shipped_sample_is_the_documented_one():
    """data/imdb-sample/README.md states the digests, the rows, the class counts and the label order."""
    import hashlib
    import re
    from pathlib import Path

    folder = Path(imdb_files()["train"]).parent
    readme = (folder / "README.md").read_text()
    for name, rows, neg, pos in (("train", 4000, 1980, 2020), ("test", 1000, 503, 497)):
        path = folder / f"{name}.parquet"
        digest = re.search(rf"sha256\s+([0-9a-f]{{64}})\s+{name}\.parquet", readme).group(1)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
        labels = pd.read_parquet(path)["label"].tolist()
        assert (len(labels), labels.count(0), labels.count(1)) == (rows, neg, pos)
        assert labels == sorted(labels), f"{name}: the sample is meant to be sorted by label"
        assert f"{rows:,}" in readme and f"{neg:,}" in readme and f"{pos:,}" in readme


def test_int_labels_need_names():
    spec = DataSpec(files={"train": "a.parquet", "test": "b.parquet"})
    with pytest.raises(DataError, match="label_names"):
        label_names_of(None, [0, 1, 1], spec)


def test_class_label_names_come_from_the_data_and_a_reversed_list_is_refused():
    from datasets import ClassLabel

    feature = ClassLabel(names=["neg", "pos"])
    spec = DataSpec(hub_id="stanfordnlp/imdb")
    assert label_names_of(feature, [0, 1], spec)[0] == ["neg", "pos"]
    with pytest.raises(DataError, match="disagree"):
        label_names_of(feature, [0, 1], DataSpec(hub_id="x/y", label_names=["pos", "neg"]))


def test_string_labels_follow_the_given_order():
    spec = DataSpec(hub_id="x/y", label_names=["positive", "negative"])
    names, mapping = label_names_of(None, ["negative", "positive"], spec)
    assert names == ["positive", "negative"] and mapping == {"negative": 1, "positive": 0}


def _write(tmp_path, frame, name="d.parquet"):
    path = tmp_path / name
    frame.to_parquet(path)
    return str(path)


def test_bad_data_is_refused_with_the_reason(tmp_path):
    ok = pd.DataFrame({"text": [f"review {i}" for i in range(40)], "label": [0, 1] * 20})
    good = _write(tmp_path, ok, "good.parquet")
    missing_col = _write(tmp_path, ok.rename(columns={"text": "review"}), "nocol.parquet")
    empty = _write(tmp_path, ok.assign(text=[""] + list(ok.text[1:])), "empty.parquet")
    skewed = _write(tmp_path, pd.DataFrame({"text": [f"r{i}" for i in range(40)], "label": [0] * 36 + [1] * 4}), "skew.parquet")
    names = ["negative", "positive"]
    with pytest.raises(DataError, match=r"missing column\(s\) \['text'\]"):
        load_splits(DataSpec(files={"train": missing_col, "test": good}, label_names=names))
    with pytest.raises(DataError, match="empty or missing text"):
        load_splits(DataSpec(files={"train": empty, "test": good}, label_names=names))
    with pytest.raises(DataError, match=r"train split is skewed 9\.\d+:1 .*max_class_ratio"):
        load_splits(DataSpec(files={"train": skewed, "test": good}, label_names=names, max_class_ratio=3.0))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read the data"):
        load_splits(DataSpec(files={"train": str(tmp_path / "junk.parquet"), "test": good}, label_names=names))


class _SplitTokenizer:
    """Whitespace tokenizer with the interface the tokenize step uses."""

    def __call__(self, texts, add_special_tokens, truncation, max_length, **_):
        return {"input_ids": [[len(w) for w in t.split()][:max_length] for t in texts]}


def test_tokenized_rows_are_ragged_and_selectable():
    part = Labelled(["a bb ccc", "dddd", "e " * 50], np.array([0, 1, 0]))
    tok = tokenize(_SplitTokenizer(), part, max_length=10)
    assert tok.offsets.tolist() == [0, 3, 4, 12]
    assert tok.lengths(10).tolist() == [5, 3, 10]
    assert tok.lengths(4).tolist() == [4, 3, 4]
    sel = tok.select(np.array([2, 0]))
    assert sel.labels.tolist() == [0, 0] and sel.ids[-3:].tolist() == [1, 2, 3]
    both = Tokenized.concat([tok, sel])
    assert len(both) == 5 and both.offsets[-1] == 12 + 11


def test_ray_starts_while_the_texts_are_tokenized_and_only_after_the_data_checks(tmp_path):
    """The driver starts Ray alongside tokenization; bad data is refused before it is called."""
    import threading

    from hpo.sweep.prepare import prepare

    spec = SweepSpec.model_validate(tiny_spec(tmp_path))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    bad = spec.model_copy(update={"data": spec.data.model_copy(update={"files": {**spec.data.files, "train": str(tmp_path / "junk.parquet")}})})
    called: list[str] = []
    with pytest.raises(DataError, match="cannot read the data"):
        prepare(bad, echo=lambda _: None, alongside=lambda: called.append("ray"))
    assert called == []

    tokenized = threading.Event()

    def echo(msg: str) -> None:
        if msg.startswith("tokenized "):
            tokenized.set()

    def alongside() -> None:  # blocks until tokenization is done: deadlocks unless the two overlap
        called.append(threading.current_thread().name)
        assert tokenized.wait(120), "tokenization did not run while `alongside` ran"

    together = prepare(spec, echo=echo, alongside=alongside)
    assert called == [threading.main_thread().name]
    alone = prepare(spec, echo=lambda _: None)
    for split in ("train", "validation", "test"):
        a, b = getattr(together.data, split), getattr(alone.data, split)
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.offsets, b.offsets) and np.array_equal(a.labels, b.labels)


def test_labels_that_cannot_be_used_are_named_with_split_column_and_row(tmp_path):
    names = ["negative", "positive"]
    good = _write(tmp_path, pd.DataFrame({"text": [f"review {i}" for i in range(40)], "label": [0, 1] * 20}), "good.parquet")
    nan = _write(tmp_path, pd.DataFrame({"text": [f"r{i}" for i in range(40)], "label": [0.0, 1.0] * 19 + [float("nan"), 1.0]}), "nan.parquet")
    with pytest.raises(DataError, match=r"train split, column 'label': 1 row\(s\) have no label \(empty or NaN\), first at row 38"):
        load_splits(DataSpec(files={"train": nan, "test": good}, label_names=names))
    one_class = _write(tmp_path, pd.DataFrame({"text": [f"r{i}" for i in range(40)], "label": [1] * 40}), "one.parquet")
    with pytest.raises(DataError, match=r"train split has no example of class\(es\) \['negative'\].*remove the class from data.label_names"):
        load_splits(DataSpec(files={"train": one_class, "test": good}, label_names=names))
    three = ["neg", "neutral", "pos"]
    strings = lambda labels: pd.DataFrame({"text": [f"r{i}" for i in range(len(labels))], "label": labels})  # noqa: E731
    no_neutral = _write(tmp_path, strings(["neg", "pos"] * 30), "two.parquet")
    all_three = _write(tmp_path, strings(["neg", "neutral", "pos"] * 20), "three.parquet")
    with pytest.raises(DataError, match=r"train split has no example of class\(es\) \['neutral'\]"):
        load_splits(DataSpec(files={"train": no_neutral, "test": all_three}, label_names=three))
    with pytest.raises(DataError, match=r"test split, column 'label', row 1: label 'neutral' is not one of \['neg', 'pos'\] \(the labels of the train split\)"):
        load_splits(DataSpec(files={"train": no_neutral, "test": all_three}))


def test_unreadable_files_name_the_one_file_and_the_cause(tmp_path):
    good = _write(tmp_path, pd.DataFrame({"text": [f"review {i}" for i in range(40)], "label": [0, 1] * 20}), "good.parquet")
    empty = _write(tmp_path, pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype="int64")}), "empty.parquet")
    with pytest.raises(DataError, match=r"data.files.train: .*empty.parquet has 0 rows") as info:
        load_splits(DataSpec(files={"train": empty, "test": good}, label_names=["negative", "positive"]))
    assert "good.parquet" not in str(info.value)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\n".encode() + "caf\xe9 great,1\nbad,0\n".encode("latin-1") * 20)
    good_csv = tmp_path / "good.csv"
    good_csv.write_text("text,label\n" + "great,1\nbad,0\n" * 20)
    with pytest.raises(DataError, match=r"data.files.train: cannot read the data from .*latin.csv: not utf-8 text \(UnicodeDecodeError at byte \d+\)") as info:
        load_splits(DataSpec(files={"train": str(latin), "test": str(good_csv)}, label_names=["negative", "positive"]))
    assert "good.csv" not in str(info.value)


def test_imbalanced_data_is_accepted_with_a_warning_and_rare_classes_are_refused(tmp_path):
    # a 6-class set whose smallest class is 14.5 times smaller than its largest (like TREC's question types)
    sizes = {"ABBR": 86, "DESC": 1162, "ENTY": 1250, "HUM": 1223, "LOC": 835, "NUM": 896}
    labels = [name for name, n in sizes.items() for _ in range(n)]
    frame = pd.DataFrame({"text": [f"question {i}" for i in range(len(labels))], "label": labels})
    train = _write(tmp_path, frame, "trec.parquet")
    test = _write(tmp_path, frame.assign(text=[f"held-out question {i}" for i in range(len(labels))]), "trec-test.parquet")
    splits = load_splits(DataSpec(files={"train": train, "test": test}, test_size=1000))
    assert splits.class_counts["train"]["ABBR"] > 0
    assert len(splits.warnings) == 1 and "imbalanced 14.5:1" in splits.warnings[0] and "val_f1_macro" in splits.warnings[0]
    rare = frame[frame.label != "ABBR"].copy()
    rare = pd.concat([rare, pd.DataFrame({"text": ["q a", "q b", "q c", "q d", "q e", "q f", "q g", "q h"], "label": ["ABBR"] * 8})])
    rare_file = _write(tmp_path, rare, "rare.parquet")
    with pytest.raises(DataError, match=r"validation split has fewer than 5 examples of class\(es\) \['ABBR'\]"):
        load_splits(DataSpec(files={"train": rare_file, "test": test}))


def test_a_sample_that_is_not_representative_is_refused(monkeypatch, tmp_path):
    """The failure the balance checks exist for: the first N rows of a label-sorted file."""
    import trainables.data as data

    monkeypatch.setattr(data, "stratified_sample", lambda labels, n, seed: np.arange(n))
    with pytest.raises(DataError, match=r"train split: class 'negative' is .* of its source file"):
        load_splits(DataSpec(files=imdb_files(), label_names=["negative", "positive"], train_size=2500))


def test_balance_strategies():
    labels = np.array([0] * 30 + [1] * 10)
    idx, w, report = balance(labels, ["a", "b"], "downsample", seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 10] and w is None and report["dropped"] == 20
    idx, w, report = balance(labels, ["a", "b"], "class_weight", seed=0)
    assert len(idx) == 40 and w.tolist() == pytest.approx([40 / 60, 40 / 20]) and report["dropped"] == 0
    idx, w, _ = balance(labels, ["a", "b"], "none", seed=0)
    assert len(idx) == 40 and w is None


def test_a_text_has_content_when_something_visible_is_left():
    from trainables.data import has_content

    for text in ("a fine film", "👍👍", "10/10", "<b>great</b>", "!!!"):
        assert has_content(text), text
    for text in ("", "   \n", "<br /><br />", "\u200b\u200d\ufeff", "&nbsp;<p></p>", None, 3):
        assert not has_content(text), text

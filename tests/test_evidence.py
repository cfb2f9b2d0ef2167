"""The statistics a promotion reports, each against values computed by hand: calibration (ECE, Brier),
duplicate detection on a planted set, the baselines' C selection and majority class, the lift gate, and
the cost of a sweep. Fast: no Ray, no model training."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hpo.sweep.baseline import choose_c, lift_gate, majority, sweep_baselines
from hpo.core.calibration import brier_score, calibration_metrics, expected_calibration_error, reliability
from hpo.analysis.cost import retrain_share, summary, sweep_cost, trial_cost
from hpo.core.errors import DataError
from hpo.core.results import Sweep, TrialRecord
from hpo.core.spec import DataSpec, SweepSpec
from hpo.core.storage import Location
from tests.conftest import tiny_spec
from trainables.data import Labelled, describe_duplicates, find_duplicates, load_splits, normalise


# ------------------------------------------------------------------------------------- calibration
def test_ece_and_brier_against_hand_computed_values():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.5, 0.5]])
    labels = np.array([0, 1, 1, 0, 0])
    # confidences 0.9, 0.8, 0.7, 0.55, 0.5 -> 15 equal-width bins (k/15, (k+1)/15]:
    # 0.9 -> bin 13 (0.8667, 0.9333], 0.8 -> bin 11 (0.7333, 0.8], 0.7 -> bin 10 (0.6667, 0.7333],
    # 0.55 -> bin 8 (0.5333, 0.6], 0.5 -> bin 7 (0.4667, 0.5333]; predicted 0, 0, 1, 1, 0 -> right, wrong, right, wrong, right
    r = reliability(probs, labels)
    assert r["bins"] == 15 and sum(r["count"]) == 5
    assert [i for i, c in enumerate(r["count"]) if c] == [7, 8, 10, 11, 13]
    assert r["accuracy"][13] == 1.0 and r["accuracy"][11] == 0.0 and r["confidence"][11] == pytest.approx(0.8)
    assert r["accuracy"][0] is None and r["confidence"][0] is None  # empty bins: no value (JSON has no NaN)
    # ECE = 1/5 (|1-0.9| + |0-0.8| + |1-0.7| + |0-0.55| + |1-0.5|) = 1/5 (0.1 + 0.8 + 0.3 + 0.55 + 0.5) = 0.45
    assert expected_calibration_error(probs, labels) == pytest.approx(0.45)
    # Brier: Σ_k (p_k - y_k)^2 per example: 2*0.01, 2*0.64, 2*0.09, 2*0.3025, 2*0.25 -> mean 2*1.2925/5 = 0.517
    assert brier_score(probs, labels) == pytest.approx(0.517)


def test_ece_pools_a_bin_and_three_classes_brier():
    # two predictions in one bin: confidences 0.61 and 0.65, both in bin 9 (0.6, 0.6667]
    probs = np.array([[0.61, 0.39], [0.65, 0.35], [0.2, 0.8]])
    labels = np.array([0, 1, 1])
    # bin 9 holds 0.61 and 0.65: mean confidence 0.63, accuracy 1/2 -> |0.5 - 0.63| * 2/3; bin 11 holds 0.8, right -> 0.2 * 1/3
    assert expected_calibration_error(probs, labels) == pytest.approx(0.13 * 2 / 3 + 0.2 / 3)
    three = np.array([[0.5, 0.3, 0.2]])
    assert brier_score(three, np.array([2])) == pytest.approx(0.25 + 0.09 + 0.64)


def test_calibration_metrics_from_logits_and_a_perfect_model():
    logits = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    m = calibration_metrics(logits, np.array([0, 1]))
    assert m["test_ece"] == pytest.approx(0.15)  # two bins, each off by 0.1 and 0.2, half the examples each
    assert m["test_brier"] == pytest.approx((0.02 + 0.08) / 2)
    sure = calibration_metrics(np.array([[50.0, -50.0], [-50.0, 50.0]]), np.array([0, 1]))
    assert sure["test_ece"] == pytest.approx(0.0, abs=1e-12) and sure["test_brier"] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------- leakage
def test_normalise_ignores_case_whitespace_and_markup_only():
    assert normalise("Great  movie!<br /><br />Loved IT.") == normalise("great movie! loved it.")
    assert normalise("A &amp; B") == "a & b"
    assert normalise("great movie") != normalise("great movies")


def _labelled(texts: list[str]) -> Labelled:
    return Labelled(texts, np.zeros(len(texts), dtype=np.int64))


def test_duplicates_on_a_planted_set():
    train = _labelled(["One good film", "two bad film", "ONE GOOD   film", "three", "four"])  # 1 repeat (case, spaces)
    validation = _labelled(["Four", "five", "six", "six<br />"])  # "Four" is in train; "six" repeated (markup)
    test = _labelled(["seven", "two bad<br/>film", "FIVE", "eight", "eight", "nine"])  # in train/validation: 2; repeated: 1
    counts, leaked = find_duplicates(train, validation, test)
    assert counts == {"within": {"train": 1, "validation": 1, "test": 1}, "validation_in_train": 1, "test_in_train": 2}
    assert leaked.tolist() == [1, 2]
    line = describe_duplicates({**counts, "test_before_drop": 6, "test_dropped": 2})
    assert "2 test text(s) also in the training data, dropped from the test split (6 -> 4 texts)" in line


def _planted_files(tmp_path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    words = ["plot", "actor", "scene", "music", "ending", "camera", "script", "cast"]
    train = [(f"review {i} " + " ".join(rng.choice(words, 6)), i % 2) for i in range(80)]
    test = [(f"test review {i} " + " ".join(rng.choice(words, 6)), i % 2) for i in range(40)]
    # three test texts that are training texts in another case / spacing / markup
    test[0] = (train[3][0].upper(), train[3][1])
    test[1] = (train[10][0].replace(" ", "  <br /> "), train[10][1])
    test[2] = ("  " + train[21][0] + "\n", train[21][1])
    files = {}
    for split, rows in (("train", train), ("test", test)):
        path = tmp_path / f"{split}.parquet"
        pd.DataFrame(rows, columns=["text", "label"]).to_parquet(path)
        files[split] = str(path)
    return files


def test_test_texts_seen_in_training_are_dropped_by_default_and_counted(tmp_path):
    files = _planted_files(tmp_path)
    spec = DataSpec(files=files, label_names=["negative", "positive"], validation_fraction=0.25, seed=1)
    splits = load_splits(spec)
    d = splits.duplicates
    assert d["test_in_train"] == 3 and d["test_dropped"] == 3 and d["test_before_drop"] == 40
    assert len(splits.test) == 37 and sum(splits.class_counts["test"].values()) == 37
    kept = {normalise(t) for t in splits.test.texts}
    assert not kept & {normalise(t) for t in splits.full_train().texts}
    keep = load_splits(spec.model_copy(update={"drop_test_duplicates": False}))
    assert len(keep.test) == 40 and keep.duplicates["test_dropped"] == 0 and keep.duplicates["test_in_train"] == 3
    assert keep.fingerprint != splits.fingerprint  # the data a sweep saw says which test split it was
    assert "kept (data.drop_test_duplicates: false)" in describe_duplicates(keep.duplicates)


def test_a_test_file_that_copies_train_is_refused_with_the_reason(tmp_path):
    files = _planted_files(tmp_path)
    spec = DataSpec(files={"train": files["train"], "test": files["train"]}, label_names=["negative", "positive"], seed=1)
    with pytest.raises(DataError, match=r"data.files.test: .* is the train file; a model scored on its own training texts"):
        load_splits(spec)
    # the same texts in another file, in another order: not the same bytes, so every test text is dropped as
    # seen in training, and the empty test split is refused with that reason
    shuffled = tmp_path / "shuffled.parquet"
    pd.read_parquet(files["train"]).iloc[::-1].to_parquet(shuffled)
    spec = DataSpec(files={"train": files["train"], "test": str(shuffled)}, label_names=["negative", "positive"], seed=1)
    with pytest.raises(DataError, match=r"test split has no example .*after dropping 80 of 80 test texts that also appear in train"):
        load_splits(spec)


# ------------------------------------------------------------------------------------- baselines
def test_choose_c_takes_the_best_and_the_smaller_c_on_a_tie():
    assert choose_c({0.1: 0.80, 1.0: 0.86, 10.0: 0.85}, "max") == 1.0
    assert choose_c({0.1: 0.80, 1.0: 0.86, 10.0: 0.86}, "max") == 1.0
    assert choose_c({0.1: 0.40, 1.0: 0.30, 10.0: 0.35}, "min") == 1.0  # val_loss
    with pytest.raises(ValueError):
        choose_c({}, "max")


def test_majority_class_against_hand_computed_values():
    names = ["negative", "positive"]
    m = majority(np.array([0, 1, 1, 1]), np.array([1, 1, 0, 0, 0]), names, "val")
    assert m["label"] == "positive" and m["val_accuracy"] == pytest.approx(0.4)
    # priors 1/4, 3/4: loss = -(2 ln 0.75 + 3 ln 0.25) / 5; macro-F1 = (0 + 2*0.4*1/(1.4)) / 2
    assert m["val_loss"] == pytest.approx(-(2 * math.log(0.75) + 3 * math.log(0.25)) / 5)
    assert m["val_f1_macro"] == pytest.approx((2 * 0.4 / 1.4) / 2)


def test_tfidf_baseline_chooses_c_on_validation_and_never_reads_test(tmp_path):
    spec = SweepSpec.model_validate(tiny_spec(tmp_path))
    splits = load_splits(spec.data.model_copy(update={"train_size": 600, "test_size": 100}))
    poisoned = type(splits)(splits.train, splits.validation, None, splits.label_names)  # a test split it must not touch
    grid = (0.01, 1.0, 100.0)
    b = sweep_baselines(poisoned, "val_accuracy", "max", grid)
    scores = {float(c): v for c, v in b["tfidf"]["c_grid"].items()}
    assert set(scores) == set(grid) and b["tfidf"]["C"] == choose_c(scores, "max")
    assert b["tfidf"]["val_accuracy"] == scores[b["tfidf"]["C"]] > b["majority"]["val_accuracy"] + 0.1
    assert b["texts"] == len(splits.validation) and b["split"] == "validation"
    by_loss = sweep_baselines(poisoned, "val_loss", "min", grid)
    assert by_loss["tfidf"]["C"] == choose_c({float(c): v for c, v in by_loss["tfidf"]["c_grid"].items()}, "min")


def test_lift_gate_is_in_points_of_test_accuracy():
    name, shown, ok = lift_gate(0.833, 0.867, 0.0)
    assert not ok and "-3.40 points (0.8330 vs 0.8670) >= 0" in shown
    assert lift_gate(0.833, 0.867, -5.0)[2] and not lift_gate(0.833, 0.867, -3.0)[2]
    assert lift_gate(0.90, 0.90, 0.0)[2] and lift_gate(0.91, 0.90, 1.0)[2]  # 1.0 point, equal to the minimum
    assert not lift_gate(0.905, 0.90, 1.0)[2]


# ------------------------------------------------------------------------------------- cost
def _trial(trial_id: str, seconds_per_round: list[float], planned: int, **last) -> TrialRecord:
    rounds, total = [], 0.0
    for i, s in enumerate(seconds_per_round, 1):
        total += s
        rounds.append({"training_iteration": i, "time_this_iter_s": s, "time_total_s": total, "rounds_planned": planned, "val_accuracy": 0.5})
    rounds[-1].update(last)
    return TrialRecord(trial_id, f"t_{trial_id}", Location.parse("/tmp"), {}, "TERMINATED", rounds)


def test_cost_against_hand_computed_values(tmp_path):
    spec = SweepSpec.model_validate({**tiny_spec(tmp_path), "resources": {"cpu": 2, "gpu": 0.5}})
    trials = [
        _trial("a", [12, 10, 10, 10], planned=4),  # ran to the end: 42 s, nothing saved
        _trial("b", [14, 10], planned=6),  # stopped at round 2: 24 s; in full 24 + 4 * 10 = 64 s
        _trial("c", [8, 6], planned=6, failure="diverged"),  # a diverged trial would have ended there anyway: 14 s
        TrialRecord("d", "t_d", Location.parse("/tmp"), {}, "PENDING"),  # no round yet: not counted
    ]
    cost = sweep_cost(Sweep(Location.parse(tmp_path), spec, {}, trials))
    assert cost.seconds == 80 and cost.full_seconds == 120
    assert cost.saved_share == pytest.approx(1 / 3)
    figures = summary(cost, {"seconds": 20.0, "device": "cuda"})
    assert figures["cpu_seconds"] == 160 and figures["gpu_seconds"] == 40
    assert [t["gpu_seconds"] for t in figures["per_trial"]] == [21, 12, 7]
    assert retrain_share(cost, {"seconds": 20.0}) == pytest.approx(0.2) and figures["retrain"]["share"] == 0.2
    assert retrain_share(cost, None) is None
    running = _trial("e", [10, 10], planned=6)
    running.status = "RUNNING"  # not stopped (yet): no saving is claimed for it
    assert trial_cost(running).full_seconds == 20 and trial_cost(running).running

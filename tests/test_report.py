"""The round-report contract and the two rules read from it: how a trial ended, and its best round."""

from __future__ import annotations

from trainables.report import (
    CONVERGED_EARLY,
    ERRORED,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    STOPPED,
    BestSoFar,
    RoundReport,
    best_of,
    ends_on_patience,
    improves,
    outcome,
)


def test_a_report_goes_through_tune_and_comes_back_the_same():
    report = RoundReport(3, 6, {"val_accuracy": 0.71, "val_top_class_share": 0.52, "train_loss": 0.4}, converged=True)
    result = {**report.to_result(), "training_iteration": 3, "trial_id": "abc"}  # Tune adds its own keys
    back = RoundReport.from_result(result)
    assert (back.round, back.rounds_planned, back.converged, back.failure) == (3, 6, True, None)
    assert back.value("val_accuracy") == 0.71 and not back.one_class
    failed = RoundReport.failed("val_loss", "min", "diverged: training loss nan in round 2", 2, 6)
    assert failed.to_result()["val_loss"] == 1e9 and RoundReport.from_result(failed.to_result()).value("val_loss") is None
    assert RoundReport(1, 6, {"val_top_class_share": 0.995}).one_class


def test_one_outcome_rule():
    planned = lambda rnd, **kw: RoundReport(rnd, 6, {"val_accuracy": 0.6}, **kw)  # noqa: E731
    assert outcome("TERMINATED", planned(6)) == FINISHED
    assert outcome("TERMINATED", planned(2)) == STOPPED
    assert outcome("TERMINATED", planned(4, converged=True)) == CONVERGED_EARLY
    assert outcome("TERMINATED", planned(2, failure="out of GPU memory")) == FAILED
    assert outcome("RUNNING", planned(2, failure="diverged")) == FAILED  # its last report already says so
    assert outcome("ERROR", planned(2)) == ERRORED
    assert outcome("RUNNING", planned(2)) == RUNNING and outcome("PENDING", None) == PENDING and outcome("PAUSED", None) == PENDING
    assert outcome("TERMINATED", None) == FINISHED


def test_one_best_so_far_rule():
    assert improves(0.7, None, "max") and improves(0.7, 0.6, "max") and not improves(0.6, 0.6, "max")
    assert improves(0.3, 0.4, "min") and not improves(0.4, 0.4, "min")
    rows = [
        {"training_iteration": 1, "val_accuracy": 0.6},
        {"training_iteration": 2, "val_accuracy": 0.8},
        {"training_iteration": 3, "val_accuracy": 0.8},  # a tie: the earlier round stays the best
        {"training_iteration": 4, "val_accuracy": 0.0, "failure": "diverged"},
    ]
    assert best_of(rows, "val_accuracy", "max") == (0.8, 2)
    assert best_of(rows[3:], "val_accuracy", "max") is None  # a failure's placeholder never counts
    tracker = BestSoFar("val_loss", "min")
    for trial, loss in [("a", 0.5), ("b", 0.4), ("a", 0.3), ("b", 0.45), ("c", None)]:
        tracker.note(trial, {"val_loss": loss} if loss is not None else {"val_loss": 1e9, "failure": "oom"})
    assert tracker.values == {"a": 0.3, "b": 0.4} and tracker.ranked(["c", "b", "a"]) == ["a", "b"]


def test_patience_counts_from_its_first_round_and_never_ends_the_last():
    assert not ends_on_patience(7, 3, 12, 3, patience_from=8)  # before the last rung
    assert ends_on_patience(8, 5, 12, 3, patience_from=8)
    assert not ends_on_patience(12, 5, 12, 3, patience_from=8)  # it ends there anyway, as finished
    assert not ends_on_patience(11, 1, 12, None, patience_from=8)

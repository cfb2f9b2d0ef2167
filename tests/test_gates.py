"""The promotion gates: registered in order, each a small class; the latency gate reads the card's figure."""

from __future__ import annotations

from pathlib import Path

from hpo.core.spec import GateSpec
from hpo.promotion.gates import GATES, GateRow, Measured, run_gates

METRICS = {"test_accuracy": 0.86, "test_recall_negative": 0.9, "test_recall_positive": 0.82}


def _measured(p95: float | None, tfidf: float = 0.84) -> Measured:
    evidence = {"model_accuracy": 0.86, "baselines": {"tfidf": {"test_accuracy": tfidf}}}
    if p95 is not None:
        evidence["serving"] = {"batch1_p95_ms": p95, "hardware": {"device": "cpu"}}
    return Measured(Path("unused"), METRICS, ["negative", "positive"], evidence)




def _rows(measured: Measured, spec: GateSpec) -> dict[str, GateRow]:
    checked = [g for g in GATES if type(g).__name__ != "LabelMapping"]
    return {row.name: row for gate in checked for row in gate.check(measured, spec)}


def test_the_gates_run_in_their_registered_order():
    assert [type(g).__name__ for g in GATES] == ["MinTestAccuracy", "ClassRecall", "LabelMapping", "SanityExamples", "BaselineLift", "Latency"]
    assert run_gates(_measured(5.0), GateSpec(enabled=False)) == []


def test_the_latency_gate_checks_the_p95_at_batch_1_against_its_budget():
    spec = GateSpec(min_test_accuracy=0.8, max_latency_ms_p95=20)
    fast, slow = _rows(_measured(12.5), spec), _rows(_measured(31.0), spec)
    assert fast["latency p95 at batch 1"].passed and fast["latency p95 at batch 1"].measured == "12.5 ms on cpu <= 20 ms"
    assert not slow["latency p95 at batch 1"].passed
    assert not _rows(_measured(None), spec)["latency p95 at batch 1"].passed  # no figure: refused, not waved through
    assert "latency p95 at batch 1" not in _rows(_measured(500.0), GateSpec(min_test_accuracy=0.8))  # off by default


def test_the_other_gates_read_the_metrics_and_the_baseline():
    rows = _rows(_measured(5.0, tfidf=0.88), GateSpec(min_test_accuracy=0.85, min_class_recall=0.85))
    assert rows["test accuracy"].passed and rows["recall of negative"].passed and not rows["recall of positive"].passed
    assert not rows["lift over TF-IDF baseline"].passed and rows["lift over TF-IDF baseline"].measured.startswith("-2.00 points")


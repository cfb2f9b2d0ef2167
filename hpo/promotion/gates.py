"""The promotion gates: what a retrained model must pass before it is published.

A gate is one small class with a ``check`` that reads what promotion measured (``Measured``) and returns
its rows (``GateRow``: name, what was measured against what is required, passed). Gates are registered in
the order they are printed; adding one is one class and its ``@register`` here (plus its knob in
``promotion.gate`` of the spec), never an edit of the promotion's flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from hpo.core.spec import GateSpec


class GateRow(NamedTuple):
    name: str
    measured: str  # the measured value against the requirement, as printed and put on the card
    passed: bool


@dataclass(frozen=True)
class Measured:
    """What a gate may look at: the retrained model's folder, its test metrics, the label names the sweep
    trained with, and the evidence promotion collected (baselines, latency and size, ...)."""

    folder: Path
    metrics: dict[str, Any]
    label_names: list[str]
    evidence: dict[str, Any]


class Gate(Protocol):
    def check(self, measured: Measured, spec: GateSpec) -> list[GateRow]: ...


GATES: list[Gate] = []


def register(cls: type) -> type:
    GATES.append(cls())
    return cls


def run_gates(measured: Measured, spec: GateSpec) -> list[GateRow]:
    """Every registered gate's rows, in order; none when the spec turns the gates off."""
    if not spec.enabled:
        return []
    return [row for gate in GATES for row in gate.check(measured, spec)]


@register
class MinTestAccuracy:
    def check(self, m: Measured, spec: GateSpec) -> list[GateRow]:
        acc = m.metrics["test_accuracy"]
        return [GateRow("test accuracy", f"{acc:.4f} >= {spec.min_test_accuracy}", acc >= spec.min_test_accuracy)]


@register
class ClassRecall:
    def check(self, m: Measured, spec: GateSpec) -> list[GateRow]:
        rows = []
        for name in m.label_names:
            r = m.metrics[f"test_recall_{name}"]
            rows.append(GateRow(f"recall of {name}", f"{r:.4f} >= {spec.min_class_recall}", r >= spec.min_class_recall))
        return rows


@register
class LabelMapping:
    """The saved config's id2label is the sweep's label order: a user of the model reads its labels there."""

    def check(self, m: Measured, spec: GateSpec) -> list[GateRow]:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(m.folder)
        saved = [config.id2label[i] for i in range(len(config.id2label))]
        return [GateRow("config id2label", f"{saved} == {m.label_names}", saved == list(m.label_names))]


@register
class SanityExamples:
    def check(self, m: Measured, spec: GateSpec) -> list[GateRow]:
        if not spec.sanity_examples:
            return []
        predicted = pipeline_labels(m.folder, [ex.text for ex in spec.sanity_examples])
        return [
            GateRow(f"sanity: {ex.text[:40]!r}", f"{got} (expected {ex.label})", got == ex.label)
            for ex, got in zip(spec.sanity_examples, predicted)
        ]


@register
class BaselineLift:
    """Test accuracy above the TF-IDF + logistic-regression baseline refitted on the same training set."""

    def check(self, m: Measured, spec: GateSpec) -> list[GateRow]:
        if "model_accuracy" not in m.evidence:
            return []
        from hpo.sweep.baseline import lift_gate

        return [GateRow(*lift_gate(m.evidence["model_accuracy"], m.evidence["baselines"]["tfidf"]["test_accuracy"], spec.min_lift_over_baseline))]


@register
class Latency:
    """The card's latency figure (``pipeline`` at batch 1, p95, on the machine that promoted) within budget."""

    def check(self, m: Measured, spec: GateSpec) -> list[GateRow]:
        if spec.max_latency_ms_p95 is None:
            return []
        serving = m.evidence.get("serving") or {}
        p95 = serving.get("batch1_p95_ms")
        if p95 is None:
            return [GateRow("latency p95 at batch 1", f"not measured <= {spec.max_latency_ms_p95:g} ms", False)]
        where = (serving.get("hardware") or {}).get("device", "this machine")
        return [GateRow("latency p95 at batch 1", f"{p95:.1f} ms on {where} <= {spec.max_latency_ms_p95:g} ms", p95 <= spec.max_latency_ms_p95)]


def pipeline_labels(folder: Path, texts: list[str]) -> list[str]:
    """Labels from ``transformers.pipeline`` on the saved folder: what a user of the model gets."""
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(folder), device="cpu")
    return [r["label"] for r in clf(texts, truncation=True, batch_size=32)]

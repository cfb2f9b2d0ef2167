"""How far a classifier's confidence can be trusted: expected calibration error, Brier score and the
reliability bins behind the diagram. numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the classes, computed stably (log-probabilities give the same result)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width confidence bin ((k/bins, (k+1)/bins], the first one closed at 0): how many
    predictions fall in it, their mean confidence (the top class's probability) and their accuracy."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    right = np.bincount(index, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, conf_sum / counts, np.nan)
        accuracy = np.where(counts > 0, right / counts, np.nan)
    as_list = lambda a: [None if np.isnan(x) else float(x) for x in a]  # noqa: E731 (JSON has no NaN)
    return {"bins": bins, "count": counts.tolist(), "confidence": as_list(mean_conf), "accuracy": as_list(accuracy)}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ over bins of (share of predictions in the bin) x |accuracy - mean confidence| (Guo et al. 2017)."""
    r = reliability(probs, labels, bins)
    n = len(labels)
    return float(sum(c / n * abs(a - m) for c, a, m in zip(r["count"], r["accuracy"], r["confidence"]) if c))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over examples of Σ_k (p_k - y_k)², y one-hot: 0 is perfect, 2 the worst (Brier 1950's
    multi-class form; with two classes it is twice the one-probability form)."""
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(labels)), labels] = 1.0
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def calibration_metrics(logits: np.ndarray, labels: np.ndarray, prefix: str = "test") -> dict[str, Any]:
    probs = probabilities(np.asarray(logits, dtype=np.float64))
    return {
        f"{prefix}_ece": expected_calibration_error(probs, labels),
        f"{prefix}_brier": brier_score(probs, labels),
        f"{prefix}_reliability": reliability(probs, labels),
    }

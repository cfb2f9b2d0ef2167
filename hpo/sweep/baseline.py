"""The baselines every sweep is measured against: the majority class, and TF-IDF (word 1-2-grams) with
logistic regression, its C chosen on the validation split. Computed at sweep start on the sweep's own
splits (seconds), stored in ``EXPERIMENT/hpo/baselines.json``; at promotion the TF-IDF model is refitted
on the winner's training set and scored on the same test split beside it.

scikit-learn is imported only where a baseline is fitted, so reading the stored figures is cheap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from trainables.report import improves
from hpo.core.storage import META_DIR, Location

BASELINES_FILE = "baselines.json"
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
# min_df 2: a word 2-gram seen once is noise; sublinear_tf: a word said ten times is not ten times the evidence.
TFIDF = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True}
TFIDF_NAME = "TF-IDF + logistic regression"
_KEPT = ("accuracy", "f1_macro", "loss")


def _metrics(log_probs: np.ndarray, labels: np.ndarray, names: list[str], prefix: str) -> dict[str, float]:
    """The trials' own metric code (log-probabilities are logits whose softmax is the probabilities)."""
    from trainables.training import classification_metrics

    m = classification_metrics(log_probs, labels, names, prefix)
    return {f"{prefix}_{k}": float(m[f"{prefix}_{k}"]) for k in _KEPT}


def majority(train_labels: np.ndarray, eval_labels: np.ndarray, names: list[str], prefix: str, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Always the training set's most frequent class (ties: the lower id), with its priors as probabilities."""
    counts = np.bincount(train_labels, weights=None if weights is None else weights[train_labels], minlength=len(names)).astype(float)
    priors = np.clip(counts / counts.sum(), 1e-12, None)
    log_probs = np.tile(np.log(priors), (len(eval_labels), 1))
    return {"label": names[int(np.argmax(counts))], **_metrics(log_probs, eval_labels, names, prefix)}


def choose_c(scores: dict[float, float], mode: str) -> float:
    """The C with the best validation value; a tie goes to the smaller C (the stronger regularisation)."""
    best: float | None = None
    for c in sorted(scores):
        if improves(scores[c], None if best is None else scores[best], mode):
            best = c
    if best is None:
        raise ValueError("no C was scored")
    return best


def _vectorize(train_texts: list[str], *others: list[str]) -> tuple[Any, ...]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(**TFIDF)
    return (vec.fit_transform(train_texts), *(vec.transform(t) for t in others))


def _logreg(x: Any, labels: np.ndarray, c: float, n_classes: int, sample_weight: np.ndarray | None = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    # liblinear is the fast exact solver for two classes; it does not do multinomial, lbfgs does.
    solver = "liblinear" if n_classes == 2 else "lbfgs"
    return LogisticRegression(C=c, solver=solver, max_iter=2000).fit(x, labels, sample_weight=sample_weight)


def _log_proba(model: Any, x: Any, n_classes: int) -> np.ndarray:
    out = np.full((x.shape[0], n_classes), -1e9)
    out[:, model.classes_] = model.predict_log_proba(x)  # a class absent from training gets no mass
    return out


def sweep_baselines(splits: Any, metric: str, mode: str, grid: tuple[float, ...] = C_GRID) -> dict[str, Any]:
    """Both baselines on the validation split (``splits``: ``trainables.data.Splits``); C chosen by the
    sweep's metric on validation. The test split is not looked at."""
    start = time.perf_counter()
    names, k = splits.label_names, len(splits.label_names)
    train, val = splits.train, splits.validation
    x_train, x_val = _vectorize(train.texts, val.texts)
    per_c = {c: _metrics(_log_proba(_logreg(x_train, train.labels, c, k), x_val, k), val.labels, names, "val") for c in grid}
    best = choose_c({c: m[metric] for c, m in per_c.items()}, mode)
    return {
        "split": "validation",
        "texts": len(val),
        "train_texts": len(train),
        "metric": metric,
        "majority": majority(train.labels, val.labels, names, "val"),
        "tfidf": {"C": best, **per_c[best], "features": int(x_train.shape[1]), "c_grid": {str(c): m[metric] for c, m in per_c.items()}},
        "seconds": round(time.perf_counter() - start, 2),
    }


def refit_and_score(train: Any, weights: np.ndarray | None, test: Any, names: list[str], c: float) -> dict[str, Any]:
    """At promotion: the TF-IDF baseline (the sweep's C) and the majority class refitted on ``train`` (the
    winner's training set, with its class weights) and scored on ``test``."""
    start = time.perf_counter()
    sample_weight = None if weights is None else weights[train.labels]
    x_train, x_test = _vectorize(train.texts, test.texts)
    model = _logreg(x_train, train.labels, c, len(names), sample_weight)
    return {
        "train_texts": len(train),
        "test_texts": len(test),
        "majority": majority(train.labels, test.labels, names, "test", weights),
        "tfidf": {"C": c, **_metrics(_log_proba(model, x_test, len(names)), test.labels, names, "test")},
        "seconds": round(time.perf_counter() - start, 2),
    }


def lift_gate(model_accuracy: float, baseline_accuracy: float, min_lift: float) -> tuple[str, str, bool]:
    """The gate row: the model's test accuracy above the baseline's, in points, at least ``min_lift``."""
    lift = round((model_accuracy - baseline_accuracy) * 100, 6)
    return ("lift over TF-IDF baseline", f"{lift:+.2f} points ({model_accuracy:.4f} vs {baseline_accuracy:.4f}) >= {min_lift:g}", lift >= min_lift)


# ------------------------------------------------------------------------------------- stored
def location(sweep_path: str | Location) -> Location:
    return Location.parse(sweep_path).child(META_DIR, BASELINES_FILE)


def read(sweep_path: str | Location) -> dict[str, Any] | None:
    """The sweep's stored baselines, or None (not computed yet, or a sweep from before baselines)."""
    try:
        return location(sweep_path).read_json()
    except (FileNotFoundError, ValueError):
        return None


def describe(b: dict[str, Any]) -> str:
    """One line: both baselines' value of the sweep's metric on the validation split."""
    metric = b["metric"]
    maj, tfidf = b["majority"], b["tfidf"]
    return (
        f"baselines on the {b['split']} split ({b['texts']} texts), {metric}: majority class ({maj['label']}) {maj[metric]:.4f}; "
        f"{TFIDF_NAME} (word 1-2-grams, C={tfidf['C']:g} chosen on validation) {tfidf[metric]:.4f}"
    )


def start(spec: Any, splits: Any, path: Location, wandb_mode: str, echo: Callable[[str], None]) -> threading.Thread:
    """Compute, store and log the baselines in a thread, while Ray starts the first trials: they take
    seconds, and a failure is a warning, never the end of the sweep."""

    def work() -> None:
        try:
            result = sweep_baselines(splits, spec.metric, spec.mode)
            location(path).write_json(result)
            echo(describe(result) + f" ({result['seconds']:.0f}s)")
        except Exception as err:  # evidence, not a reason to stop the sweep
            echo(f"warning: the baselines could not be computed: {type(err).__name__}: {' '.join(str(err).split())[:200]}")
            return
        try:
            _log(spec, result, path, wandb_mode)
        except Exception as err:
            echo(f"warning: logging the baselines to W&B failed: {type(err).__name__}: {' '.join(str(err).split())[:200]}")

    thread = threading.Thread(target=work, name="hpo-baselines", daemon=True)
    thread.start()
    return thread


def _log(spec: Any, result: dict[str, Any], path: Location, wandb_mode: str) -> None:
    """One run of the sweep's W&B group, job type ``baseline``, whose summary holds the TF-IDF baseline's
    validation metrics under the trials' own names (so it lines up with them in W&B's tables)."""
    from hpo.sweep.tracking import log_baseline

    tfidf, maj = result["tfidf"], result["majority"]
    summary = {**{k: v for k, v in tfidf.items() if k.startswith("val_")}, **{f"majority_{k}": v for k, v in maj.items() if k.startswith("val_")}}
    config = {"model": TFIDF_NAME, "C": tfidf["C"], "c_grid": list(C_GRID), **{k: list(v) if isinstance(v, tuple) else v for k, v in TFIDF.items()}}
    folder = path.mirror(META_DIR, "baselines")
    folder.mkdir(parents=True, exist_ok=True)
    if log_baseline(spec.tracking, spec.name, wandb_mode, config, summary, str(folder)) and not path.is_local:
        path.child(META_DIR, "baselines").upload_dir(folder)

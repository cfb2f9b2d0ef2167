"""The new model against the one already on the Hub.

When the target repo holds a model, its current revision is downloaded and scored on the same test
split as the new model, each with its own tokenizer and label mapping, and the two are compared example
by example: both accuracies, the difference with a paired-bootstrap interval, and McNemar's exact test.
``promotion.require_improvement`` decides whether the new model may replace it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpo.core.errors import GateError, PromotionError
from hpo.core.stats import PairedComparison, compare_paired

SIGNIFICANCE = 0.05  # require_improvement: significant
BOOTSTRAP_SEED = 0
WEIGHTS = "model.safetensors"

RULES = {
    "none": "no requirement: published whatever the comparison says",
    "not_worse": "the new model's test accuracy must be at least the old one's",
    "significant": f"the new model must be more accurate, with McNemar's exact p < {SIGNIFICANCE}",
}


@dataclass(frozen=True)
class Champion:
    """The model a Hub repo holds now, downloaded at its current revision."""

    repo_id: str
    revision: str
    folder: Path


@dataclass(frozen=True)
class Comparison:
    repo_id: str
    revision: str
    rule: str
    passed: bool
    verdict: str
    same_model: bool
    stats: PairedComparison | None  # None when the repo already holds this exact model

    def record(self) -> dict[str, Any]:
        """What the card's provenance keeps."""
        out = {k: v for k, v in asdict(self).items() if k != "stats"}
        if self.stats is not None:
            out.update(asdict(self.stats))
        return out


class LabelMismatch(PromotionError):
    """The Hub's model classifies into other labels than the new one: the two cannot be compared."""


# ------------------------------------------------------------------------------------------- fetching
def fetch_champion(api: Any, repo_id: str, work: Path, echo: Callable[[str], None]) -> Champion | None:
    """The repo's current model, downloaded into ``work``; None when the repo does not exist or holds no
    model (no ``config.json``) yet."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    from hpo.promotion.hub import is_network_error

    try:
        info = api.model_info(repo_id)
        files = {s.rfilename for s in info.siblings or []}
        if "config.json" not in files:
            echo(f"the Hub repo {repo_id} holds no model yet: nothing to compare with")
            return None
        target = work / f"champion-{info.sha[:12]}"
        api.snapshot_download(repo_id=repo_id, revision=info.sha, repo_type="model", local_dir=str(target))
    except RepositoryNotFoundError:
        echo(f"the Hub repo {repo_id} does not exist yet: nothing to compare with")
        return None
    except Exception as err:
        if not (isinstance(err, HfHubHTTPError) or is_network_error(err)):
            raise
        raise PromotionError(
            f"cannot read the model {repo_id} holds now on the Hub at {api.endpoint}, to compare with it: "
            f"{' '.join(str(err).split())[:200]}; nothing was published; rerun the same command"
        ) from None
    return Champion(repo_id, info.sha, target)


# ------------------------------------------------------------------------------------------- scoring
def label_names_of(folder: Path) -> list[str]:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def _own_max_length(tokenizer: Any, config: Any) -> int:
    """The length the model was trained at: its tokenizer's ``model_max_length`` (promotion sets it),
    bounded by its position embeddings and by 512."""
    bound = min(512, int(getattr(config, "max_position_embeddings", 512) or 512))
    length = getattr(tokenizer, "model_max_length", None)
    return min(bound, int(length)) if isinstance(length, int) and length > 0 else bound


def _own_truncation(folder: Path, tokenizer: Any) -> str:
    """The truncation the model was trained with: its provenance's (promotion publishes it), else its tokenizer's
    side (a tokenizer that truncates on the left keeps the tail), else the head."""
    from trainables.settings import TRUNCATIONS

    try:
        recorded = json.loads((folder / "provenance.json").read_text()).get("training", {}).get("truncation")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded in TRUNCATIONS:
        return recorded
    return "tail" if getattr(tokenizer, "truncation_side", "right") == "left" else "head"


def outcomes_on_test(folder: Path, splits: Any, batch_size: int = 128) -> np.ndarray:
    """Per test example, whether the model in ``folder`` labels it right: tokenized with the folder's
    own tokenizer, its class ids read through its own ``id2label``. ``splits``: ``load_splits``'s result."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from trainables.data import special_ids, tokenize
    from trainables.model import load_tokenizer
    from trainables.training import predict

    names = list(splits.label_names)
    theirs = label_names_of(folder)
    if sorted(theirs) != sorted(names):
        raise LabelMismatch(f"{folder}: its labels {theirs} are not this sweep's {names}")
    config = AutoConfig.from_pretrained(folder)
    tokenizer = load_tokenizer(str(folder))
    max_length, truncation = _own_max_length(tokenizer, config), _own_truncation(folder, tokenizer)
    test = tokenize(tokenizer, splits.test, max_length, (truncation,))
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    logits = predict(model, test, special_ids(tokenizer), max_length, batch_size, torch.device("cpu"), truncation=truncation)
    predicted = np.array(theirs, dtype=object)[logits.argmax(axis=1)]
    truth = np.array(names, dtype=object)[test.labels]
    return predicted == truth


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decide(rule: str, stats: PairedComparison) -> tuple[bool, str]:
    """Whether the new model may replace the old one under ``rule``, and why, in words."""
    better, p = stats.accuracy_a > stats.accuracy_b, stats.p_value
    if rule == "none":
        return True, "published whatever the comparison says (require_improvement: none)"
    if rule == "not_worse":
        ok = stats.accuracy_a >= stats.accuracy_b
        return ok, f"new accuracy {stats.accuracy_a:.4f} {'>=' if ok else '<'} old {stats.accuracy_b:.4f}"
    if rule == "significant":
        ok = better and p < SIGNIFICANCE
        why = "more accurate" if better else "not more accurate"
        return ok, f"new model {why}, McNemar p = {p:.4g} ({'<' if p < SIGNIFICANCE else '>='} {SIGNIFICANCE})"
    raise ValueError(f"unknown rule {rule!r}")


def compare(champion: Champion, model_dir: Path, splits: Any, rule: str, echo: Callable[[str], None] = print) -> Comparison:
    """Score both models on the test split and apply ``rule``. Raises ``LabelMismatch`` when the
    champion's labels differ."""
    if _sha256(champion.folder / WEIGHTS) is not None and _sha256(champion.folder / WEIGHTS) == _sha256(model_dir / WEIGHTS):
        verdict = "the repo already holds this exact model (a rerun): nothing to compare"
        return Comparison(champion.repo_id, champion.revision, rule, True, verdict, True, None)
    old = outcomes_on_test(champion.folder, splits)
    new = outcomes_on_test(model_dir, splits)
    stats = compare_paired(new, old, seed=BOOTSTRAP_SEED)
    passed, verdict = decide(rule, stats)
    return Comparison(champion.repo_id, champion.revision, rule, passed, verdict, False, stats)


def compare_with_hub(api: Any, repo_id: str, model_dir: Path, splits: Any, rule: str, work: Path, echo: Callable[[str], None] = print) -> Comparison | None:
    """Fetch the repo's model, compare, print; raise ``GateError`` (nothing published) when ``rule``
    refuses the new model or, unless the rule is ``none``, when the two cannot be compared."""
    champion = fetch_champion(api, repo_id, work, echo)
    if champion is None:
        return None
    echo(f"comparing with the model {repo_id} holds now (revision {champion.revision[:12]}) on the same test split")
    try:
        result = compare(champion, model_dir, splits, rule, echo)
    except LabelMismatch as err:
        if rule == "none":
            echo(f"warning: not compared with {repo_id}@{champion.revision[:12]}: {err}")
            return None
        raise GateError(
            f"the model {repo_id} holds now (revision {champion.revision[:12]}) cannot be compared with this one: {err}; "
            "nothing published: publish to another repo, or set promotion.require_improvement: none to replace it"
        ) from None
    finally:
        shutil.rmtree(champion.folder, ignore_errors=True)  # a copy of the Hub's model, scored: no further use
    print_comparison(result, echo)
    if not result.passed:
        raise GateError(
            f"promotion.require_improvement: {rule}: the new model is refused against the one on the Hub ({result.verdict}), "
            f"nothing published; {repo_id} stays at revision {champion.revision[:12]}"
        )
    return result


# ----------------------------------------------------------------------------------------- reporting
def _points(x: float) -> str:
    return f"{x * 100:+.2f}"


def print_comparison(c: Comparison, echo: Callable[[str], None]) -> None:
    echo(f"new model vs {c.repo_id}@{c.revision[:12]} (the repo's current revision):")
    if c.stats is None:
        echo(f"  {c.verdict}")
        return
    s = c.stats
    rows = [
        ("test examples (paired)", str(s.n)),
        ("accuracy, old model", f"{s.accuracy_b:.4f}"),
        ("accuracy, new model", f"{s.accuracy_a:.4f}"),
        ("difference (points)", f"{_points(s.difference)}  [{s.level:.0%} paired bootstrap: {_points(s.low)} .. {_points(s.high)}]"),
        ("only the new one right", str(s.only_a)),
        ("only the old one right", str(s.only_b)),
        ("McNemar exact p", f"{s.p_value:.4g}"),
        (f"rule {c.rule}", f"{'pass' if c.passed else 'FAIL'}: {c.verdict}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        echo(f"  {k.ljust(width)}  {v}")


def card_markdown(c: Comparison) -> str:
    head = "## Compared with the previous model\n\n"
    if c.stats is None:
        return head + f"The repo's previous revision `{c.revision}` held this same model (the promotion was rerun).\n"
    s = c.stats
    return head + f"""The repo's previous revision `{c.revision}` and this model, scored on the same {s.n} test texts
(each with its own tokenizer and label mapping), example by example:

| | accuracy |
|---|---|
| previous model (`{c.revision[:12]}`) | {s.accuracy_b:.4f} |
| this model | {s.accuracy_a:.4f} |
| difference | {_points(s.difference)} points ({s.level:.0%} paired bootstrap interval {_points(s.low)} to {_points(s.high)}) |

Texts only this model labels right: {s.only_a}; only the previous one: {s.only_b}; McNemar's exact test p = {s.p_value:.4g}.
Publishing rule `require_improvement: {c.rule}` ({RULES[c.rule]}): passed ({c.verdict}).
"""

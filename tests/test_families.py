"""Model families: a RoBERTa (built offline, tiny) trains through the same code as DistilBERT, with its
own dropout names and its own special tokens, and a family without an adapter is refused up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import imdb_files, run_cli, tiny_spec
from trainables.data import Labelled, SpecialIds, special_ids, tokenize
from trainables.errors import ModelError
from trainables.model import load_classifier, load_tokenizer, model_family
from trainables.settings import TrainingSpec
from trainables.training import collate


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory) -> Path:
    """A 2-layer RoBERTa with a byte-level BPE vocabulary learnt from 300 reviews, saved like a Hub model."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("roberta")
    texts = pd.read_parquet(imdb_files()["train"])["text"].sample(300, random_state=0).tolist()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tok = RobertaTokenizerFast(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"), model_max_length=128)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=140, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    RobertaForMaskedLM(config).save_pretrained(folder)
    return folder


def test_roberta_frames_texts_with_its_own_tokens_and_gets_the_spec_dropout(roberta_dir):
    tok = load_tokenizer(str(roberta_dir))
    special = special_ids(tok)
    assert special == SpecialIds(cls=tok.bos_token_id, sep=tok.eos_token_id, pad=tok.pad_token_id)
    assert (special.cls, special.pad) != (101, 0)  # not BERT's [CLS] and padding
    assert model_family(str(roberta_dir)).title == "RoBERTa"
    hp = TrainingSpec(dropout=0.3, attention_dropout=0.25, classifier_dropout=0.4, max_length=64)
    model = load_classifier(str(roberta_dir), ["negative", "positive"], hp).eval()
    c = model.config
    assert (c.hidden_dropout_prob, c.attention_probs_dropout_prob, c.classifier_dropout) == (0.3, 0.25, 0.4)
    assert c.id2label == {0: "negative", 1: "positive"}
    # our batches (tokenized once, framed per batch) give the logits the tokenizer's own encoding gives
    texts = ["A wonderful film.", "Dull, far too long, and the plot makes no sense at all, sadly."]
    data = tokenize(tok, Labelled(texts, np.array([1, 0])), hp.max_length)
    batch = collate(data, np.arange(2), hp.max_length, special)
    reference = tok(texts, padding=True, truncation=True, max_length=hp.max_length, return_tensors="pt")
    assert batch["input_ids"].tolist() == reference["input_ids"].tolist()
    with torch.no_grad():
        ours = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        theirs = model(**reference).logits
    torch.testing.assert_close(ours, theirs)


def test_distilbert_presets_get_the_spec_dropout_under_their_own_names():
    from hpo.core.spec import ModelSpec
    from trainables.model import base_source

    source = base_source(ModelSpec(offline_preset={"layers": 1, "dim": 32, "heads": 2, "hidden_dim": 64}))
    model = load_classifier(source, ["a", "b"], TrainingSpec(dropout=0.15, attention_dropout=0.05, classifier_dropout=0.35))
    assert (model.config.dropout, model.config.attention_dropout, model.config.seq_classif_dropout) == (0.15, 0.05, 0.35)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, roberta_dir) -> Path:
    """A model of a family without an adapter (GPT-2's config, the RoBERTa's byte-level tokenizer)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(GPT2Config(vocab_size=600, n_positions=64, n_embd=32, n_layer=1, n_head=2)).save_pretrained(folder)
    load_tokenizer(str(roberta_dir)).save_pretrained(folder)
    return folder


def test_a_family_without_an_adapter_is_refused_by_name(gpt2_dir):
    with pytest.raises(ModelError, match=r"model family 'gpt2' is not supported.*bert, distilbert, roberta"):
        load_classifier(str(gpt2_dir), ["a", "b"], TrainingSpec())


def test_a_sweep_on_an_unsupported_family_exits_2_before_any_trial(gpt2_dir, tmp_path):
    from tests.conftest import cli_env

    raw = tiny_spec(tmp_path / "runs", name="gpt2")
    raw["model"] = {"name": str(gpt2_dir)}
    spec = tmp_path / "gpt2.yaml"
    spec.write_text(yaml.safe_dump(raw))
    result = run_cli(["sweep", str(spec)], cli_env(tmp_path), tmp_path, timeout=300)
    assert result.returncode == 2, result.stdout[-3000:]
    assert f"{gpt2_dir}: model family 'gpt2' is not supported" in result.stdout and "Traceback" not in result.stdout
    sweep = tmp_path / "runs" / "gpt2"
    assert not [p for p in sweep.glob("gpt2_*")]  # no trial folder

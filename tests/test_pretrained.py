"""The offline pretrained preset: a DistilBERT that computes exactly what all-MiniLM-L6-v2's BERT encoder
computes, fine-tuned through the same code as ``distilbert-base-uncased``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpo.core.spec import DataSpec, ModelSpec, OfflinePreset, TrainingSpec
from tests.conftest import imdb_files
from trainables.data import load_splits, special_ids, tokenize
from trainables.model import base_source, load_classifier, load_tokenizer, pretrained_dir
from trainables.trial import build_state
from trainables.training import evaluate, train_rounds


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    import os

    os.environ["HPO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return base_source(ModelSpec(offline_pretrained="minilm-l6"))


def test_the_pretrained_distilbert_computes_the_bert_encoders_hidden_states(pretrained):
    from transformers import AutoModel, BertModel

    from trainables.model import minilm_weights_file

    assert pretrained_dir("minilm-l6") == type(pretrained_dir("minilm-l6"))(pretrained)  # built once, then reused
    tok = load_tokenizer(pretrained)
    bert = BertModel.from_pretrained(minilm_weights_file().parent, add_pooling_layer=False, attn_implementation="eager").eval()
    ours = AutoModel.from_pretrained(pretrained).eval()
    assert type(ours).__name__ == "DistilBertModel"
    assert (ours.config.n_layers, ours.config.dim, ours.config.n_heads, ours.config.activation) == (6, 384, 12, "gelu")
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in bert.parameters()) - 2 * 384  # no token types
    texts = [
        "A wonderful, moving film; the cast is superb.",
        "Terrible. Two hours of my life I will never get back, and the plot made no sense whatsoever.",
        "ok",
    ]
    batch = tok(texts, padding=True, return_tensors="pt")  # padded rows: the attention mask matters too
    with torch.no_grad():
        expected = bert(**batch).last_hidden_state
        got = ours(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    real = batch["attention_mask"].bool()
    # fp32, the same weights; only the order of two additions in the embeddings differs (measured: 4e-6,
    # against hidden values up to about 6): 1e-4 allows for other CPUs' kernels, a wrong weight is off by > 0.1
    assert (got - expected)[real].abs().max() < 1e-4


def test_the_spec_dropout_knobs_reach_the_models_config(pretrained):
    hp = TrainingSpec(dropout=0.3, attention_dropout=0.25, classifier_dropout=0.15)
    model = load_classifier(pretrained, ["negative", "positive"], hp)
    assert (model.config.dropout, model.config.attention_dropout, model.config.seq_classif_dropout) == (0.3, 0.25, 0.15)
    assert model.distilbert.embeddings.dropout.p == 0.3
    assert model.distilbert.transformer.layer[0].attention.dropout.p == 0.25
    assert model.dropout.p == 0.15  # before the classification head


def test_fine_tuning_leaves_chance_faster_than_the_random_init_preset(pretrained):
    """The same data, settings and training loop; only the base weights differ."""
    torch.set_num_threads(2)
    splits = load_splits(DataSpec(files=imdb_files(), label_names=["negative", "positive"], train_size=500, test_size=40, validation_fraction=0.4, seed=13))
    hp = TrainingSpec(learning_rate=2e-4, batch_size=16, max_length=64, epochs=1, rounds_per_epoch=3, eval_batch_size=200, dropout=0.1)
    device = torch.device("cpu")
    curves = {}
    random_init = base_source(ModelSpec(offline_preset=OfflinePreset(layers=2, dim=64, heads=2, hidden_dim=256)))
    for name, source in {"pretrained": pretrained, "random": random_init}.items():
        tok = load_tokenizer(source)
        train, val = tokenize(tok, splits.train, 64), tokenize(tok, splits.validation, 64)
        state = build_state(source, splits.label_names, hp, len(train), 3, device)
        curves[name] = [
            evaluate(state.model, val, special_ids(tok), hp, splits.label_names, device)["val_accuracy"]
            for _ in train_rounds(state, hp, train, special_ids(tok), 3, device)
        ]
    print(curves)
    # 200 validation reviews, balanced: chance is 0.5 and its noise about 0.035 (one standard deviation), so
    # 0.6 is chance left behind. Measured here: pretrained 0.56 / 0.52 / 0.62, random 0.50 (one class) throughout.
    assert max(curves["pretrained"]) >= 0.6, curves
    assert max(curves["random"]) < 0.6, curves
    assert np.mean(curves["pretrained"]) > np.mean(curves["random"]) + 0.05, curves


def test_the_pretrained_cpu_spec_is_a_small_sweep_of_the_pretrained_preset(monkeypatch):
    from hpo.core.spec import load_spec
    from tests.conftest import REPO

    monkeypatch.chdir(REPO)
    spec = load_spec(REPO / "search_spaces" / "pretrained_cpu.yaml")
    assert spec.model.offline_pretrained == "minilm-l6" and spec.resources.gpu == 0
    # about 12 training samples/s at length 128 on 2 cores: a few thousand samples in all
    assert spec.training.max_length == 128 and spec.data.train_size <= 1000
    assert spec.budget.num_trials * spec.scheduler.max_rounds * 400 <= 8000 and spec.budget.max_concurrent == 1

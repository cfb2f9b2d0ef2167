"""``hpo init DATA``: the spec it writes for a data set is accepted by ``hpo sweep`` as it is (checked here with
the checks ``hpo sweep --check`` runs), names the right columns, labels and counts, and explains itself;
what it cannot decide, or must not overwrite, it refuses with exit 2. No Ray, no training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hpo.cli import main
from tests.conftest import IMDB, cli_env, run_cli


def _reviews(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` reviews of the IMDB sample, shuffled, with their 0/1 labels."""
    frame = pd.read_parquet(IMDB / "train.parquet").sample(n=n, random_state=seed)
    return frame.reset_index(drop=True)


def _init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(["init", *args], cli_env(tmp_path), tmp_path, timeout=300)


def _checked(tmp_path: Path, spec_file: str, monkeypatch, model: bool = True):
    """The spec loaded and checked as ``hpo sweep`` does before it starts (``hpo sweep --check``)."""
    from hpo.sweep.driver import check_sweep
    from hpo.core.spec import load_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    spec = load_spec(spec_file)
    return spec, check_sweep(spec, echo=lambda line: None, model=model)


def _raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_imdb_folder(tmp_path):
    (tmp_path / "imdb").symlink_to(IMDB)
    done = _init(tmp_path, "imdb")
    assert done.returncode == 0, done.stdout[-3000:]
    spec_file = tmp_path / "imdb.yaml"
    raw, text = _raw(spec_file), spec_file.read_text()
    data = raw["data"]
    assert data["files"] == {"train": "imdb/train.parquet", "test": "imdb/test.parquet"}  # relative, as given
    assert (data["text_column"], data["label_column"], data["label_names"]) == ("text", "label", ["0", "1"])
    assert "test_fraction" not in data
    assert raw["metric"] == "val_accuracy" and raw["resources"]["gpu"] == 0 and "offline_preset" in raw["model"]
    # IMDB reviews run long: the 95th percentile is past the model's 512 tokens
    assert raw["training"]["max_length"] == 512
    for said in ("0: 1,980, 1: 2,020", "sorted by label", "95th percentile", "hpo sweep imdb.yaml"):
        assert said in done.stdout, said
    assert "rename them" in text and "sorted by label" in text and "stratified" in text
    # `hpo sweep --check` accepts it, without starting (or even importing) Ray and without writing anything
    check = subprocess.run(
        [sys.executable, "-c", "import sys; from hpo.cli import main; rc = main(sys.argv[1:]); print('ray loaded:', 'ray' in sys.modules); sys.exit(rc)",
         "sweep", "imdb.yaml", "--check"],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "ready" in check.stdout and "ray loaded: False" in check.stdout
    assert not (tmp_path / "runs").exists()


def test_a_binary_csv_with_other_column_names(tmp_path, monkeypatch):
    reviews = _reviews(600, seed=1)
    pd.DataFrame({
        "review_id": range(1000, 1600),
        "product_title": [f"Movie night pack #{i}" for i in range(600)],
        "review_body": reviews["text"],
        "stars_positive": reviews["label"] == 1,
    }).to_csv(tmp_path / "reviews.csv", index=False)
    done = _init(tmp_path, "reviews.csv")
    assert done.returncode == 0, done.stdout[-3000:]
    data = _raw(tmp_path / "reviews.yaml")["data"]
    assert data["files"] == {"train": "reviews.csv"} and data["test_fraction"] == 0.2
    assert (data["text_column"], data["label_column"], data["label_names"]) == ("review_body", "stars_positive", ["False", "True"])
    positives = int((reviews["label"] == 1).sum())
    assert f"False: {600 - positives:,}, True: {positives:,}" in done.stdout and "not sorted by label" in done.stdout
    spec, splits = _checked(tmp_path, "reviews.yaml", monkeypatch)
    assert splits.label_names == ["False", "True"]
    # the held-out test split is a fifth of the file, both classes in it
    test = splits.class_counts["test"]
    assert min(test.values()) >= 40 and sum(test.values()) + splits.duplicates["test_dropped"] == 120


def test_an_imbalanced_multiclass_jsonl_an_existing_spec_and_force(tmp_path, monkeypatch):
    reviews = _reviews(400, seed=2)
    labels = ["positive"] * 250 + ["neutral"] * 100 + ["negative"] * 50
    frame = pd.DataFrame({"id": range(400), "sentence": reviews["text"].str.slice(0, 300), "sentiment": labels})
    frame.sample(frac=1, random_state=3).to_json(tmp_path / "opinions.jsonl", orient="records", lines=True)
    target = tmp_path / "specs" / "opinions.yaml"
    target.parent.mkdir()
    target.write_text("# my own spec\n")

    kept = _init(tmp_path, "opinions.jsonl", "-o", "specs/opinions.yaml")
    assert kept.returncode == 2, kept.stdout[-3000:]
    assert "specs/opinions.yaml" in kept.stdout and "--force" in kept.stdout and "Traceback" not in kept.stdout
    assert target.read_text() == "# my own spec\n"

    done = _init(tmp_path, "opinions.jsonl", "-o", "specs/opinions.yaml", "--force")
    assert done.returncode == 0, done.stdout[-3000:]
    raw = _raw(target)
    assert (raw["data"]["text_column"], raw["data"]["label_column"]) == ("sentence", "sentiment")
    assert raw["data"]["label_names"] == ["negative", "neutral", "positive"]
    assert raw["metric"] == "val_f1_macro" and "imbalanced (5.00:1" in target.read_text()
    assert "negative: 50, neutral: 100, positive: 250" in done.stdout and "5.00:1" in done.stdout
    # 300 characters are far under 512 tokens: max_length follows the texts, in steps of 32
    assert raw["training"]["max_length"] % 32 == 0 and raw["training"]["max_length"] <= 128
    spec, splits = _checked(tmp_path, "specs/opinions.yaml", monkeypatch)
    assert spec.metric == "val_f1_macro" and splits.label_names == ["negative", "neutral", "positive"]


def test_a_label_sorted_file(tmp_path, monkeypatch):
    (tmp_path / "imdb").symlink_to(IMDB)
    done = _init(tmp_path, "imdb/train.parquet", "-o", "sorted.yaml")  # every negative review, then every positive one
    assert done.returncode == 0, done.stdout[-3000:]
    raw, text = _raw(tmp_path / "sorted.yaml"), (tmp_path / "sorted.yaml").read_text()
    assert raw["name"] == "imdb" and raw["data"]["files"] == {"train": "imdb/train.parquet"} and raw["data"]["test_fraction"] == 0.2
    assert "sorted by label" in done.stdout and "sorted by label" in text
    spec, splits = _checked(tmp_path, "sorted.yaml", monkeypatch)
    # the test split held out of a sorted file is not its last rows: both classes, in the file's proportion
    test = splits.class_counts["test"]
    assert abs(test["0"] - 396) <= 2 and abs(test["1"] - 404) <= 2


def test_a_hub_model_without_the_hub_is_measured_with_the_offline_vocabulary(tmp_path, monkeypatch):
    reviews = _reviews(300, seed=8)
    pd.DataFrame({"content": reviews["text"], "target": reviews["label"].map({0: "bad", 1: "good"})}).to_csv(tmp_path / "films.csv", index=False)
    done = _init(tmp_path, "films.csv", "--model", "distilbert-base-uncased")  # offline: the Hub cannot be reached
    assert done.returncode == 0, done.stdout[-3000:]
    raw, text = _raw(tmp_path / "films.yaml"), (tmp_path / "films.yaml").read_text()
    assert raw["model"] == {"name": "distilbert-base-uncased"} and raw["data"]["label_names"] == ["bad", "good"]
    assert "the distilbert-base-uncased vocabulary shipped offline" in done.stdout and "not checked: the base model" in done.stdout
    assert "cannot be loaded here" in text and "--model distilbert-base-uncased" in text
    # pretrained on a CPU machine: one trial at a time on every core, a stratified sample of the rows
    assert raw["budget"]["max_concurrent"] == 1 and raw["resources"]["gpu"] == 0
    spec, splits = _checked(tmp_path, "films.yaml", monkeypatch, model=False)  # all but the model, which needs the Hub
    assert spec.model.name == "distilbert-base-uncased" and splits.label_names == ["bad", "good"]


# ------------------------------------------------------------------------------------------- refusals
def _long_texts(tmp_path: Path) -> Path:
    reviews = _reviews(300, seed=4)
    path = tmp_path / "two_texts.parquet"
    other = _reviews(300, seed=7)["text"]  # two columns of whole reviews
    pd.DataFrame({"summary": other, "body": reviews["text"], "label": reviews["label"]}).to_parquet(path)
    return path


def _no_label(tmp_path: Path) -> Path:
    reviews = _reviews(300, seed=5)
    path = tmp_path / "scores.csv"
    pd.DataFrame({"text": reviews["text"], "score": [i / 7 for i in range(300)], "row": range(300)}).to_csv(path, index=False)
    return path


def _star_ids(tmp_path: Path) -> Path:
    reviews = _reviews(300, seed=6)
    path = tmp_path / "stars.parquet"
    pd.DataFrame({"text": reviews["text"], "stars": [1 + i % 5 for i in range(300)]}).to_parquet(path)
    return path


@pytest.mark.parametrize(
    "make,names",
    [
        (_long_texts, ["cannot tell which column holds the texts", "'summary' (string", "'body' (string", "'label' (int", "--text-column"]),
        (_no_label, ["no column looks like labels", "'score' (float64", "'row' (int", "--label-column"]),
        (_star_ids, ["'stars' holds ids [1, 2, 3, 4, 5]", "0..n-1"]),
        (lambda t: t / "nothing.csv", ["nothing.csv: no such file or folder"]),
    ],
    ids=["two long text columns", "no plausible label", "ids not from 0", "no such file"],
)
def test_what_init_cannot_decide_is_refused_and_nothing_written(make, names, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(["init", data.name]) == 2
    out = capsys.readouterr()
    for name in names:
        assert name in out.err, (name, out.err)
    assert "Traceback" not in out.err
    assert sorted(tmp_path.rglob("*")) == before


def test_the_named_text_column_settles_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    _long_texts(tmp_path)
    assert main(["init", "two_texts.parquet", "--text-column", "body"]) == 0, capsys.readouterr().err
    data = _raw(tmp_path / "two_texts.yaml")["data"]
    assert (data["text_column"], data["label_column"]) == ("body", "label")
    assert "as asked (--text-column)" in (tmp_path / "two_texts.yaml").read_text()


def test_a_hub_dataset_out_of_reach_is_refused(tmp_path):
    done = _init(tmp_path, "stanfordnlp/imdb")  # the environment is offline and the datasets cache empty
    assert done.returncode == 2, done.stdout[-3000:]
    assert "'stanfordnlp/imdb'" in done.stdout and "the Hugging Face Hub cannot be reached" in done.stdout
    assert "Traceback" not in done.stdout and not list(tmp_path.glob("*.yaml"))


# ------------------------------------------------------------------------------------------ machines
@pytest.mark.parametrize(
    "cpus,gpus,model,expect",
    [
        (16, 4, None, {"name": "distilbert-base-uncased", "gpu": 1, "max_concurrent": 4, "train_size": None}),
        (2, 0, "distilbert-base-uncased", {"name": "distilbert-base-uncased", "gpu": 0, "max_concurrent": 1, "train_size": 1000}),
        (2, 0, None, {"name": None, "gpu": 0, "max_concurrent": 2, "train_size": 4000}),
    ],
    ids=["GPU machine", "Hub model on CPU", "CPU machine"],
)
def test_the_budget_fits_the_machine(cpus, gpus, model, expect):
    from hpo.sweep.init import BaseModel, Column, Findings, Labels, Lengths, Machine, Picked, Source, render
    from hpo.core.spec import parse_spec

    text, label = Column("text", "string", 9000, 800.0, False), Column("label", "int", 2, 0.0, True)
    preset = {"offline_preset": {"layers": 2, "dim": 64, "heads": 2, "hidden_dim": 256, "seed": 0}}
    findings = Findings(
        command="hpo init big.parquet",
        output="big.yaml",
        source=Source(name="big", files={"train": "big.parquet"}, test_note="one file"),
        train_rows=10_000,
        columns=Picked(text, label, "named as texts usually are", "named as labels usually are"),
        labels=Labels(label, ["0", "1"], {"0": 5000, "1": 5000}, True, False),
        lengths=Lengths(256, 230.0, 1000, 0.04, 512),
        model=BaseModel({"name": model or "distilbert-base-uncased"} if model or gpus else preset, bool(model or gpus), None, "a tokenizer", "why"),
        machine=Machine(cpus, gpus),
    )
    spec = parse_spec(yaml.safe_load(render(findings)))
    assert spec.model.name == expect["name"]
    assert spec.resources.gpu == expect["gpu"] and spec.budget.max_concurrent == expect["max_concurrent"]
    assert spec.resources.cpu * spec.budget.max_concurrent <= cpus
    assert spec.data.train_size == expect["train_size"] and spec.data.test_fraction == 0.2


def test_sweep_check_refuses_bad_data_before_anything_starts(tmp_path, capsys, monkeypatch):
    from tests.conftest import tiny_spec, write_spec

    monkeypatch.chdir(tmp_path)
    raw = tiny_spec(tmp_path / "runs")
    del raw["data"]["label_names"]  # the sample's labels are bare ids: they need names
    write_spec(tmp_path / "spec.yaml", raw)
    assert main(["sweep", "spec.yaml", "--check"]) == 2
    err = capsys.readouterr().err
    assert "data.label_names" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    assert main(["sweep", "--resume", "runs/tiny", "--check"]) == 2
    assert "--check" in capsys.readouterr().err

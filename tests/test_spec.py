"""The spec: every shipped YAML loads; bad specs are refused with every problem named, exit 2, nothing launched."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from hpo.core.errors import SpecError
from hpo.core.spec import load_spec, parse_spec
from tests.conftest import REPO, run_cli, cli_env, tiny_spec, write_spec

SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))


def test_there_are_shipped_specs():
    names = {p.name for p in SHIPPED}
    assert {"quickstart.yaml", "distilbert_imdb.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_spec_loads(path, monkeypatch):
    monkeypatch.chdir(REPO)  # shipped specs refer to data/imdb-sample/ relative to the repo root
    spec = load_spec(path)
    assert spec.name and spec.search_space
    assert spec.scheduler.grace_period <= spec.scheduler.max_rounds
    assert Path(spec.storage).is_absolute() or "://" in spec.storage


def test_gpu_spec_is_the_real_thing(monkeypatch):
    monkeypatch.chdir(REPO)
    spec = load_spec(REPO / "search_spaces" / "distilbert_imdb.yaml")
    assert spec.model.name == "distilbert-base-uncased"
    assert spec.data.hub_id == "stanfordnlp/imdb"
    assert spec.resources.gpu == 1 and spec.budget.num_trials == 32
    assert spec.scheduler.max_rounds == 4 * spec.training.rounds_per_epoch


def test_quickstart_is_offline(monkeypatch):
    monkeypatch.chdir(REPO)
    spec = load_spec(REPO / "search_spaces" / "quickstart.yaml")
    assert spec.model.offline_preset is not None
    assert spec.budget.num_trials >= 8
    assert all(Path(f).is_file() for f in spec.data.files.values())


def _problems(raw: dict) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw, "bad.yaml")
    return info.value.problems


def test_all_problems_reported_together(tmp_path):
    raw = tiny_spec(tmp_path)
    raw["search_space"]["learning_rate"] = {"type": "loguniform", "low": 0.0, "high": 1e-3}
    raw["budget"] = {"num_trials": 0, "max_concurrent": 2}
    raw["scheduler"] = {"type": "asha", "max_rounds": 2, "grace_period": 3}
    raw["trainng"] = {}
    problems = _problems(raw)
    text = "\n".join(problems)
    raw["scheduler"] = {"type": "asha", "patience": 0}
    assert any("scheduler.patience" in p and "0" in p for p in _problems(raw))
    assert "search_space.learning_rate.low" in text and "0.0" in text
    assert "budget.num_trials" in text
    assert "grace_period (3) exceeds max_rounds (2)" in text
    assert "trainng: unknown key" in text
    assert len(problems) >= 4


def test_unknown_search_parameter_names_the_allowed_ones(tmp_path):
    raw = tiny_spec(tmp_path)
    raw["search_space"]["lr"] = {"type": "uniform", "low": 0.1, "high": 0.2}
    (problem,) = _problems(raw)
    assert "search_space.lr" in problem and "learning_rate" in problem


def test_search_values_are_checked_against_training_limits(tmp_path):
    raw = tiny_spec(tmp_path)
    raw["search_space"]["max_length"] = {"type": "choice", "values": [128, 1024]}
    (problem,) = _problems(raw)
    assert "search_space.max_length" in problem and "1024" in problem


def test_mode_must_match_metric(tmp_path):
    raw = tiny_spec(tmp_path, metric="val_loss", mode="max")
    assert any("val_loss should be minimized" in p for p in _problems(raw))


def test_model_needs_exactly_one_source(tmp_path):
    raw = tiny_spec(tmp_path)
    raw["model"] = {"name": "distilbert-base-uncased", "offline_preset": {}}
    assert any("exactly one of 'name'" in p for p in _problems(raw))


def test_sanity_labels_must_be_label_names(tmp_path):
    raw = copy.deepcopy(tiny_spec(tmp_path))
    raw["promotion"]["gate"]["sanity_examples"] = [{"text": "great", "label": "pos"}]
    assert any("'pos' not in label_names" in p for p in _problems(raw))


def test_missing_data_file_is_named(tmp_path):
    raw = tiny_spec(tmp_path)
    raw["data"]["files"]["train"] = str(tmp_path / "nope.parquet")
    path = write_spec(tmp_path / "s.yaml", raw)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "data.files.train" in str(info.value) and "nope.parquet" in str(info.value)


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "broken.yaml" in str(info.value) and "line" in str(info.value)


def test_cli_bad_spec_exits_2_names_key_and_launches_nothing(tmp_path):
    raw = tiny_spec(tmp_path / "runs")
    raw["scheduler"]["reduction_factor"] = 1
    raw["search_space"]["batch_size"] = {"type": "choice", "values": []}
    path = write_spec(tmp_path / "bad.yaml", raw)
    result = run_cli(["sweep", str(path)], cli_env(tmp_path), tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout
    assert "bad.yaml" in result.stdout
    assert "scheduler.reduction_factor" in result.stdout
    assert "search_space.batch_size.values" in result.stdout
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "runs").exists()


def test_cli_bad_data_fails_before_ray_starts(tmp_path):
    import pandas as pd

    one_class, test = tmp_path / "one.parquet", tmp_path / "test.parquet"
    pd.DataFrame({"text": ["good film"] * 30, "label": [1] * 30}).to_parquet(one_class)
    pd.DataFrame({"text": ["fine film", "dull film"] * 15, "label": [1, 0] * 15}).to_parquet(test)
    raw = tiny_spec(tmp_path / "runs")
    raw["data"] = {**raw["data"], "files": {"train": str(one_class), "test": str(test)}, "train_size": None, "test_size": None}
    path = write_spec(tmp_path / "one.yaml", raw)
    result = run_cli(["sweep", str(path)], cli_env(tmp_path), tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout
    assert "no example of class(es) ['negative']" in result.stdout
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "runs" / "tiny" / "tuner.pkl").exists()


def test_debug_shows_traceback(tmp_path):
    raw = tiny_spec(tmp_path)
    raw["budget"]["num_trials"] = -1
    path = write_spec(tmp_path / "bad.yaml", raw)
    result = run_cli(["--debug", "sweep", str(path)], cli_env(tmp_path), tmp_path, timeout=60)
    assert result.returncode != 0 and "Traceback" in result.stdout


def test_promotion_finalists_and_improvement_rule(tmp_path):
    raw = tiny_spec(tmp_path)
    spec = parse_spec(raw)
    assert spec.promotion.require_improvement == "not_worse"  # the default
    assert (spec.promotion.finalists.top_k, spec.promotion.finalists.seeds, spec.promotion.finalists.enabled) == (2, 2, True)
    raw["promotion"]["finalists"] = {"top_k": 1, "seeds": 1}
    assert parse_spec(raw).promotion.finalists.enabled is False  # 1 and 1: off
    raw["promotion"]["finalists"] = {"top_k": 0, "seeds": 3}
    raw["promotion"]["require_improvement"] = "better"
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    text = str(err.value)
    assert "promotion.finalists.top_k" in text and "(got 0)" in text
    assert "promotion.require_improvement" in text and "'none', 'not_worse' or 'significant'" in text and "'better'" in text


def test_every_spec_field_has_a_description():
    """The generated spec reference (docs/reference/spec.md) shows these descriptions: a new field without one
    fails here."""
    from tests.spec_fields import spec_fields

    missing = [path for path, field in spec_fields() if not field.description]
    assert not missing, f"spec fields without a description: {missing}"


def test_yaml_is_read_as_written_exponents_are_numbers_and_a_key_twice_is_refused():
    import yaml

    from hpo.core.spec import load_yaml

    assert load_yaml("low: 1e-5\nhigh: 1.0e-3\nname: '1e-5'\n") == {"low": 1e-5, "high": 1e-3, "name": "1e-5"}
    # a merge key may be overridden: that is what it is for
    assert load_yaml("base: &b {epochs: 2, batch_size: 8}\ntraining:\n  <<: *b\n  epochs: 3\n")["training"] == {"epochs": 3, "batch_size": 8}
    with pytest.raises(yaml.YAMLError, match=r"the key 'epochs' appears twice in one mapping \(first on line 2\)"):
        load_yaml("training:\n  epochs: 2\n  epochs: 3\n")


def test_a_spec_written_with_1e_minus_5_loads_with_that_number(tmp_path):
    raw = tiny_spec(tmp_path / "runs")
    text = write_spec(tmp_path / "s.yaml", raw).read_text().replace("low: 0.0005", "low: 5e-4")
    assert "low: 5e-4" in text
    (tmp_path / "s.yaml").write_text(text)
    assert load_spec(tmp_path / "s.yaml").search_space["learning_rate"].low == 5e-4


def test_home_folders_expand_in_paths(tmp_path, monkeypatch):
    import getpass
    import os

    from hpo.core.paths import local_path

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    raw = tiny_spec(tmp_path / "runs")
    for split, path in raw["data"]["files"].items():
        (home / "data" / Path(path).name).symlink_to(path)
        raw["data"]["files"][split] = f"~/data/{Path(path).name}"
    raw["storage"] = "~/runs"
    monkeypatch.setenv("HOME", str(home))
    spec = load_spec(write_spec(tmp_path / "s.yaml", raw))
    assert spec.storage == str((home / "runs").resolve())
    assert spec.data.files["train"] == str(Path(tiny_spec(tmp_path)["data"]["files"]["train"]).resolve())
    user = getpass.getuser()
    assert local_path(f"~{user}/x") == Path(os.path.expanduser(f"~{user}")).resolve() / "x"
    with pytest.raises(ValueError, match="no user 'no_such_user_hpo' on this machine"):
        local_path("~no_such_user_hpo/x")


def test_counts_are_whole_numbers_and_floats_finite():
    raw = tiny_spec(Path("runs"))
    for where, value in ((("budget", "num_trials"), True), (("promotion", "finalists", "seeds"), 2.0), (("training", "epochs"), "3"),
                         (("scheduler", "reduction_factor"), float("inf")), (("training", "dropout"), float("nan"))):
        bad = copy.deepcopy(raw)
        node = bad
        for key in where[:-1]:
            node = node.setdefault(key, {})
        node[where[-1]] = value
        with pytest.raises(SpecError, match=".".join(where)):
            parse_spec(bad)
    ok = copy.deepcopy(raw)
    ok["resources"]["cpu"], ok["scheduler"]["reduction_factor"] = 1, 3  # a whole number is a valid float
    assert parse_spec(ok).scheduler.reduction_factor == 3.0


def test_a_gpu_share_must_divide_one_gpu_evenly():
    from trainables.settings import ResourcesSpec

    for gpu in (0.5, 0.3333, 0.25, 0.125, 1, 2, 0):
        assert ResourcesSpec(gpu=gpu).gpu == gpu
    for gpu in (0.3, 0.33, 0.4, 0.75):
        with pytest.raises(ValueError, match=f"{gpu:g} of a GPU does not share one GPU evenly"):
            ResourcesSpec(gpu=gpu)


def test_cli_refuses_a_gpu_share_that_leaves_part_of_a_gpu_and_launches_nothing(tmp_path):
    raw = tiny_spec(tmp_path / "runs")
    raw["resources"] = {"cpu": 1, "gpu": 0.3}
    path = write_spec(tmp_path / "share.yaml", raw)
    result = run_cli(["sweep", str(path)], cli_env(tmp_path), tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout
    assert "share.yaml" in result.stdout
    assert "resources.gpu: 0.3 of a GPU does not share one GPU evenly: 1/0.3 = 3.33 trials per GPU" in result.stdout
    assert "1/N for N trials per GPU: 0.5, 0.3333, 0.25" in result.stdout and "(got 0.3)" in result.stdout
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "runs").exists()

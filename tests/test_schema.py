"""The sweep spec's JSON Schema (``hpo schema``): the shipped copy is what the models give today, every shipped spec
names it and passes it, and it refuses what ``hpo sweep`` refuses for structure."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import jsonschema
import pydantic
import pytest
import yaml

from hpo.cli import main
from hpo.core.errors import SpecError
from hpo.core.spec import parse_spec
from tests.conftest import REPO
from tests.spec_fields import spec_fields

SHIPPED_SCHEMA = REPO / "search_spaces" / "sweep-spec.schema.json"
SPECS = sorted((REPO / "search_spaces").glob("*.yaml"))
FIRST_LINE = "# yaml-language-server: $schema=./sweep-spec.schema.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SHIPPED_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_shipped_schema_is_what_hpo_schema_prints(capsys, tmp_path):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == SHIPPED_SCHEMA.read_text(), "stale: run .venv/bin/hpo schema -o search_spaces/sweep-spec.schema.json"
    out = tmp_path / "schema.json"
    code = f"import sys; from hpo.cli import main; main(['schema', '-o', {str(out)!r}]); print('torch' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert light.stdout.strip() == "False", light.stderr[-2000:]  # no torch for a schema
    assert out.read_text() == printed


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_every_shipped_spec_names_the_schema_and_passes_it(path, validator):
    text = path.read_text()
    assert text.splitlines()[0] == FIRST_LINE
    assert list(validator.iter_errors(yaml.safe_load(text))) == []


def test_every_model_that_forbids_unknown_keys_says_so_in_the_schema():
    schema = json.loads(SHIPPED_SCHEMA.read_text())
    models = {}
    for _, field in spec_fields():
        for arg in [field.annotation, *_args(field.annotation)]:
            if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel):
                models[arg.__name__] = arg
    assert len(models) >= 15
    for name, model in models.items():
        assert model.model_config.get("extra") == "forbid", name
        assert schema["$defs"][name]["additionalProperties"] is False, name
    assert schema["additionalProperties"] is False  # the top level too


def _args(annotation: object) -> list[object]:
    import typing

    return [a for arg in typing.get_args(annotation) for a in (arg, *_args(arg))]


def _quickstart() -> dict:
    return yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())


def _set(raw: dict, path: str, value: object) -> dict:
    out = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[last] = value
    return out


def _drop(raw: dict, path: str) -> dict:
    out = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    del node[last]
    return out


BAD = {
    "misspelt top-level key": lambda r: {**_drop(r, "training"), "traning": r["training"]},
    "misspelt scheduler key": lambda r: _set(r, "scheduler", {"type": "asha", "grace_perod": 2}),
    "misspelt search-space parameter": lambda r: _set(r, "search_space", {"lerning_rate": r["search_space"]["learning_rate"]}),
    "misspelt distribution key": lambda r: _set(r, "search_space.learning_rate", {"type": "loguniform", "low": 1e-5, "hihg": 1e-3}),
    "unknown distribution type": lambda r: _set(r, "search_space.learning_rate", {"type": "normal", "low": 1e-5, "high": 1e-3}),
    "text where a count goes": lambda r: _set(r, "budget", {"num_trials": "ten"}),
    "a list where a mapping goes": lambda r: _set(r, "training", [1, 2]),
    "a value outside the allowed ones": lambda r: _set(r, "searcher", {"type": "grid"}),
    "a value below its bound": lambda r: _set(r, "data.validation_fraction", 0.0),
    "two models": lambda r: _set(r, "model", {"name": "distilbert-base-uncased", "offline_pretrained": "minilm-l6"}),
    "no model": lambda r: _set(r, "model", {"name": None}),
    "no data source": lambda r: _drop(r, "data.files"),
    "a files mapping without test or test_fraction": lambda r: _set(r, "data.files", {"train": "data/imdb-sample/train.parquet"}),
    "a missing required key": lambda r: _drop(r, "name"),
    "a name with a space": lambda r: _set(r, "name", "my sweep"),
    "a key of another searcher": lambda r: _set(r, "searcher", {"type": "random", "n_startup_trials": 3}),
    "a key of another scheduler": lambda r: _set(r, "scheduler", {"type": "fifo", "reduction_factor": 2}),
}


@pytest.mark.parametrize("mutation", BAD.values(), ids=BAD.keys())
def test_the_schema_refuses_what_hpo_sweep_refuses(mutation, validator):
    raw = mutation(_quickstart())
    with pytest.raises(SpecError):
        parse_spec(raw)
    assert list(validator.iter_errors(raw)), "the schema passes a spec hpo sweep refuses"


def test_hpo_schema_replaces_only_an_earlier_schema(tmp_path, capsys):
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\n")
    assert main(["schema", "-o", str(spec)]) == 2
    assert spec.read_text() == "name: mine\n"  # never overwritten
    assert "not a sweep-spec schema" in capsys.readouterr().err
    earlier = tmp_path / "schema.json"
    earlier.write_text(json.dumps({"title": "SweepSpec", "$defs": {}}))
    assert main(["schema", "-o", str(earlier)]) == 0
    assert earlier.read_text() == SHIPPED_SCHEMA.read_text()
    assert main(["schema", "-o", str(tmp_path / "no" / "such" / "schema.json")]) == 2
    assert "no such folder" in capsys.readouterr().err

"""Bad input, table-driven: each case is run through the CLI as a user types it, in-process (none of them
may get as far as loading data or starting Ray), and must exit with its code, name the culprit, show no
traceback and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpo.cli import main
from tests.conftest import cli_env, run_cli, tiny_spec

def _spec(tmp: Path, **changes) -> Path:
    raw = tiny_spec(tmp / "runs")
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _text(tmp: Path, text: str | bytes) -> Path:
    path = tmp / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _bomb(tmp: Path) -> Path:
    """A small file (YAML aliases) whose ``promotion.tags`` expands to 9**8 strings."""
    value: list = ["x"] * 9
    for _ in range(8):
        value = [value] * 9
    raw = tiny_spec(tmp / "runs")
    raw["promotion"]["tags"] = value
    path = _text(tmp, yaml.safe_dump(raw, sort_keys=False))  # safe_dump writes shared lists as aliases
    assert path.stat().st_size < 20_000
    return path


def _corrupt_sweep(tmp: Path) -> Path:
    (tmp / "sweep" / "hpo").mkdir(parents=True)
    (tmp / "sweep" / "hpo" / "spec.yaml").write_text("name: [broken\n  storage: {")
    return tmp / "sweep"


# (id, how to make the input, the arguments, exit code, what the message must name)
CASES = [
    ("unknown top key", lambda t: _spec(t, bogus=1), ["sweep", "{spec}"], 2, ["bogus: unknown key", "allowed here: budget"]),
    ("unknown nested key", lambda t: _spec(t, budget__trials=3), ["sweep", "{spec}"], 2, ["budget.trials", "allowed here: max_concurrent, num_trials"]),
    ("unknown key in a search space", lambda t: _spec(t, search_space__learning_rate__step=2), ["sweep", "{spec}"], 2, ["search_space.learning_rate.step", "allowed here: high, low, type"]),
    ("num_trials true", lambda t: _spec(t, budget__num_trials=True), ["sweep", "{spec}"], 2, ["budget.num_trials", "True"]),
    ("num_trials zero", lambda t: _spec(t, budget__num_trials=0), ["sweep", "{spec}"], 2, ["budget.num_trials"]),
    ("max_concurrent over num_trials", lambda t: _spec(t, budget__max_concurrent=9), ["sweep", "{spec}"], 2, ["budget.max_concurrent: 9 is more than budget.num_trials (6)"]),
    ("a trial needs more CPUs than the machine", lambda t: _spec(t, resources__cpu=100000), ["sweep", "{spec}"], 2, ["resources.cpu", "100000"]),
    ("a trial needs more CPUs than --num-cpus", lambda t: _spec(t, resources__cpu=2), ["sweep", "{spec}", "--num-cpus", "1"], 2, ["resources.cpu", "--num-cpus"]),
    ("--num-cpus 0", lambda t: _spec(t), ["sweep", "{spec}", "--num-cpus", "0"], 2, ["--num-cpus", "'0'"]),
    ("--num-cpus -1", lambda t: _spec(t), ["sweep", "{spec}", "--num-cpus", "-1"], 2, ["--num-cpus", "'-1'"]),
    ("bad --name", lambda t: _spec(t), ["sweep", "{spec}", "--name", "no spaces!"], 2, ["name:", "(from --name)"]),
    ("YAML alias bomb in a valid key", _bomb, ["sweep", "{spec}"], 2, ["promotion.tags"]),
    ("spec over 1 MB", lambda t: _text(t, "# padding\n" * 120_000), ["sweep", "{spec}"], 2, ["bytes; a sweep spec is at most 1,000,000"]),
    ("not YAML", lambda t: _text(t, "name: [unclosed\n"), ["sweep", "{spec}"], 2, ["not valid YAML", "line"]),
    ("not UTF-8", lambda t: _text(t, b"name: \xff\xfe\n"), ["sweep", "{spec}"], 2, ["not a UTF-8 text file"]),
    ("a list, not a mapping", lambda t: _text(t, "- a\n- b\n"), ["sweep", "{spec}"], 2, ["expected a mapping"]),
    ("missing spec file", lambda t: t / "nope.yaml", ["sweep", "{spec}"], 2, ["nope.yaml", "cannot read the file"]),
    ("no spec and no --resume", lambda t: t, ["sweep"], 2, ["give a spec file, or --resume PATH"]),
    ("--resume with flags it would drop", lambda t: t, ["sweep", "--resume", "{tmp}", "--name", "other", "--wandb-mode", "disabled"], 2, ["--name, --wandb-mode cannot change it"]),
    ("data file missing", lambda t: _spec(t, data__files={"train": str(t / "x.parquet"), "test": str(t / "y.parquet")}), ["sweep", "{spec}"], 2, ["data.files.train", "x.parquet"]),
    ("not a searchable parameter", lambda t: _spec(t, search_space__seed={"type": "int", "low": 0, "high": 3}), ["sweep", "{spec}"], 2, ["search_space.seed: not searchable"]),
    ("storage is a file", lambda t: (t / "afile").write_text("x") and _spec(t, storage=str(t / "afile")), ["sweep", "{spec}"], 2, ["afile", "is a file"]),
    ("storage URI with credentials", lambda t: _spec(t, storage="s3://KEY:SECRET@bucket/x"), ["sweep", "{spec}"], 2, ["credentials in a storage URI"]),
    ("storage scheme pyarrow does not know", lambda t: _spec(t, storage="foo://bucket/x"), ["sweep", "{spec}"], 2, ["foo://bucket/x", "not a storage URI"]),
    ("status of a folder that is no sweep", lambda t: t, ["status", "{tmp}"], 1, ["not a sweep folder"]),
    ("status of a sweep whose stored spec is corrupt", lambda t: _corrupt_sweep(t), ["status", "{tmp}/sweep"], 1, ["hpo/spec.yaml: the sweep's stored spec is unreadable"]),
    ("resume of a folder that is no sweep", lambda t: t, ["resume", "{tmp}"], 1, ["not a sweep folder"]),
    ("dashboard of a folder that is no sweep", lambda t: t, ["dashboard", "{tmp}"], 1, ["not a sweep folder"]),
    ("promote of a folder that is no sweep", lambda t: t, ["promote", "{tmp}", "--dry-run", "{tmp}/out"], 1, ["not a sweep folder"]),
    ("promote with neither target", lambda t: t, ["promote", "{tmp}"], 2, ["exactly one of --repo-id"]),
    ("promote with both targets", lambda t: t, ["promote", "{tmp}", "--repo-id", "a/b", "--dry-run", "x"], 2, ["exactly one of --repo-id"]),
    ("malformed --repo-id", lambda t: t, ["promote", "{tmp}", "--repo-id", "no-owner"], 2, ["--repo-id 'no-owner' is not a Hub repo id"]),
    ("submit with local storage", lambda t: _spec(t), ["submit", "{spec}", "--address", "http://127.0.0.1:9", "--working-dir", "{tmp}"], 2, ["storage:", "--storage s3://"]),
    ("submit to an address that is not a URL", lambda t: _spec(t, storage="s3://bucket/x"), ["submit", "{spec}", "--address", "auto", "--working-dir", "{tmp}/.."], 2, ["--address 'auto'", "http://HEAD:8265"]),
    ("submit a spec whose data is outside the working directory", lambda t: _spec(t, storage="s3://bucket/x"), ["submit", "{spec}", "--address", "http://127.0.0.1:9", "--working-dir", "{tmp}"], 2, ["data.files.train", "outside the working directory"]),
    ("submit without --address", lambda t: _spec(t), ["submit", "{spec}"], 2, ["--address"]),
    ("unknown command", lambda t: t, ["sweeep"], 2, ["invalid choice: 'sweeep'"]),
    ("unknown flag", lambda t: _spec(t), ["sweep", "{spec}", "--num-gpus", "2"], 2, ["unrecognized arguments: --num-gpus"]),
    ("bad --wandb-mode", lambda t: _spec(t), ["sweep", "{spec}", "--wandb-mode", "sometimes"], 2, ["--wandb-mode", "'sometimes'"]),
    ("metric against its mode", lambda t: _spec(t, metric="val_loss", mode="max"), ["sweep", "{spec}"], 2, ["mode: val_loss should be minimized"]),
    ("empty choice list", lambda t: _spec(t, search_space__batch_size={"type": "choice", "values": []}), ["sweep", "{spec}"], 2, ["search_space.batch_size.values"]),
    ("inverted range", lambda t: _spec(t, search_space__learning_rate={"type": "loguniform", "low": 1e-2, "high": 1e-4}), ["sweep", "{spec}"], 2, ["search_space.learning_rate"]),
    ("sanity label not a label", lambda t: _spec(t, promotion__gate__sanity_examples=[{"text": "x", "label": "neutral"}]), ["sweep", "{spec}"], 2, ["'neutral' not in label_names"]),
]


@pytest.mark.parametrize("make,args,code,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_its_culprit_named(make, args, code, names, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    case = tmp_path / "case"
    case.mkdir()
    spec = make(case)
    argv = [a.format(spec=spec, tmp=case) for a in args]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    try:
        got = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        got = stop.code
    out = capsys.readouterr()
    text = out.out + out.err
    assert got == code, text[-3000:]
    for name in names:
        assert name in text, (name, text[-3000:])
    assert "Traceback" not in text
    assert len(text) < 20_000  # a message, not a dump of the input
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written or started


def test_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)



# ------------------------------------------------------------------------- services that do not answer
def _closed_url() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("key,value", [("model", {"name": "acme/distilbert-never-cached"}), ("data", "hub")], ids=["hub model", "hub dataset"])
def test_a_hub_that_cannot_be_reached_is_a_network_error_before_anything_starts(key, value, tmp_path):
    # in a process of its own: huggingface_hub reads HF_ENDPOINT once, when it is first imported
    env = {**cli_env(tmp_path), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": _closed_url(), "HF_HOME": str(tmp_path / "hf")}
    raw = tiny_spec(tmp_path / "runs")
    if key == "model":
        raw["model"] = value
    else:
        raw["data"] = {"hub_id": "acme/imdb-never-cached", "label_names": ["negative", "positive"], "train_size": 100, "test_size": 40}
    spec = tmp_path / "hub.yaml"
    spec.write_text(yaml.safe_dump(raw))
    result = run_cli(["sweep", str(spec)], env, tmp_path, timeout=120)
    code, text = result.returncode, result.stdout
    assert code == 1, text[-3000:]
    assert "cannot reach the Hugging Face Hub at http://127.0.0.1:" in text and "never-cached" in text
    assert "Traceback" not in text and "tokenized" not in text and not (tmp_path / "runs").exists()


def test_wandb_that_cannot_be_reached_stops_an_online_sweep_and_auto_falls_back(tmp_path):
    from hpo.sweep.preflight import Unreachable, check_wandb

    env = {**cli_env(tmp_path), "WANDB_API_KEY": "not-a-real-key-" + "0" * 24, "WANDB_BASE_URL": _closed_url()}
    spec = tmp_path / "w.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(tmp_path / "runs")))
    result = run_cli(["sweep", str(spec), "--wandb-mode", "online"], env, tmp_path, timeout=120)
    code, text = result.returncode, result.stdout
    assert code == 1 and "cannot reach W&B at http://127.0.0.1:" in text and "--wandb-mode offline" in text, text[-2000:]
    assert "tokenized" not in text and not (tmp_path / "runs").exists()
    said = []
    assert check_wandb("online", "auto", said.append) == "offline"
    assert "logging offline instead" in said[0] and "wandb sync" in said[0]
    with pytest.raises(Unreachable):
        check_wandb("online", "online", said.append)
    assert check_wandb("offline", "offline", said.append) == "offline" and len(said) == 1  # offline never probes

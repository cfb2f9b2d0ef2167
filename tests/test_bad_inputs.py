"""Bad input, table-driven: each case is run through the CLI as a user types it, in-process (none of them
may get as far as starting Ray; only the cases about the data's content load the data), and must exit with its
code, name the culprit in one message, never say "unexpected error", show no traceback and leave nothing
behind."""

from __future__ import annotations

from pathlib import Path

import json
import os
import shutil

import pytest
import yaml

from hpo.cli import main
from tests.conftest import cli_env, free_port, imdb_files, run_cli, tiny_spec

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


def _data(tmp: Path, rows: list[tuple[object, object]], name: str = "train.jsonl") -> str:
    """A small data file of (text, label) rows, JSON lines: a column may mix types as a hand-made file does."""
    path = tmp / name
    path.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows))
    return str(path)


_REVIEWS = [("a fine film, well acted", "positive"), ("dull and far too long", "negative")] * 10


def _with_data(tmp: Path, train: list, test: list | None = None, **data) -> Path:
    files = {"train": _data(tmp, train), "test": _data(tmp, test or _REVIEWS, "test.jsonl")}
    return _spec(tmp, data={"files": files, "label_names": ["negative", "positive"], **data})


def _loop(tmp: Path, name: str) -> Path:
    """A symbolic link that points at itself."""
    link = tmp / name
    link.symlink_to(link)
    return link


def _fifo(tmp: Path) -> Path:
    path = tmp / "spec.yaml"
    os.mkfifo(path)
    return path


def _stored_sweep(tmp: Path, spec: bytes | None = None, params: bytes | None = None, **files: bytes) -> Path:
    """A sweep folder as ``hpo sweep`` leaves it (its stored spec, one trial), with one file changed by hand
    (``files``: more files of its own, by their path under ``hpo/`` with ``__`` for ``/``)."""
    sweep = tmp / "sweep"
    (sweep / "hpo").mkdir(parents=True)
    (sweep / "hpo" / "spec.yaml").write_bytes(spec if spec is not None else yaml.safe_dump(tiny_spec(tmp / "runs")).encode())
    trial = sweep / "tiny_00001"
    trial.mkdir()
    (trial / "params.json").write_bytes(params if params is not None else b'{"learning_rate": 0.001}')
    for name, content in files.items():
        path = sweep / "hpo" / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return sweep


def _too_slow_sweep(tmp: Path) -> Path:
    """An ended two-objective sweep whose one trial is slower than the latency gate."""
    raw = tiny_spec(tmp / "runs", objectives=[{"metric": "val_accuracy", "mode": "max"}, {"metric": "val_latency_ms_p95", "mode": "min"}])
    raw["promotion"]["gate"]["max_latency_ms_p95"] = 5.0
    sweep = _stored_sweep(tmp, spec=yaml.safe_dump(raw).encode())
    row = {"trial_id": "00001", "training_iteration": 1, "round": 1, "rounds_planned": 1, "val_accuracy": 0.8, "val_latency_ms_p95": 12.5, "converged": False}
    (sweep / "tiny_00001" / "result.json").write_text(json.dumps(row) + "\n")
    state = {"trial_data": [[{"trial_id": "00001", "status": "TERMINATED", "config": {"learning_rate": 0.001}}, {"last_result": row}]]}
    (sweep / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    return sweep


def _emptied_state_sweep(tmp: Path) -> Path:
    """A sweep whose driver was killed while it wrote Tune's experiment state (an older hpo's upload wrote it in
    place): the state is empty, the trial folder and Tune's tuner are there."""
    sweep = _stored_sweep(tmp)
    row = {"trial_id": "00001", "training_iteration": 1, "round": 1, "rounds_planned": 2, "val_accuracy": 0.7, "converged": False}
    (sweep / "tiny_00001" / "result.json").write_text(json.dumps(row) + "\n")
    (sweep / "tuner.pkl").write_bytes(b"tuner")
    (sweep / "experiment_state-2026-01-01_00-00-00.json").write_bytes(b"")
    return sweep


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
    ("resume of a sweep whose experiment state is empty", _emptied_state_sweep, ["resume", "{tmp}/sweep"], 1, ["experiment_state-2026-01-01_00-00-00.json: Tune's experiment state is empty", "nothing was resumed", "--warm-start"]),
    ("dashboard of a folder that is no sweep", lambda t: t, ["dashboard", "{tmp}"], 1, ["not a sweep folder"]),
    ("promote of a folder that is no sweep", lambda t: t, ["promote", "{tmp}", "--dry-run", "{tmp}/out"], 1, ["not a sweep folder"]),
    ("promote with neither target", lambda t: t, ["promote", "{tmp}"], 2, ["exactly one of --repo-id"]),
    ("promote with no trial within the latency gate", _too_slow_sweep, ["promote", "{tmp}/sweep", "--dry-run", "{tmp}/out"], 3, ["no ended trial meets promotion.gate.max_latency_ms_p95 (5 ms)", "00001: val_accuracy 0.8, val_latency_ms_p95 12.5 (round 1)"]),
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
    ("objective of an unknown metric", lambda t: _spec(t, objectives=[{"metric": "val_accuracy", "mode": "max"}, {"metric": "latency_ms", "mode": "min"}]), ["sweep", "{spec}"], 2, ["objectives.1.metric:", "'latency_ms'", "val_latency_ms_p95"]),
    ("objective given twice", lambda t: _spec(t, objectives=[{"metric": "val_accuracy", "mode": "max"}, {"metric": "val_accuracy", "mode": "max"}]), ["sweep", "{spec}"], 2, ["objectives.1.metric: val_accuracy is already objective 0"]),
    ("objective against its mode", lambda t: _spec(t, objectives=[{"metric": "val_accuracy", "mode": "max"}, {"metric": "val_latency_ms_p95", "mode": "max"}]), ["sweep", "{spec}"], 2, ["objectives.1.mode: val_latency_ms_p95 is minimized"]),
    ("latency as the first objective", lambda t: _spec(t, objectives=[{"metric": "val_latency_ms_p95", "mode": "min"}, {"metric": "val_accuracy", "mode": "max"}]), ["sweep", "{spec}"], 2, ["objectives.0.metric:", "allowed: val_accuracy, val_f1_macro, val_loss"]),
    ("metric and first objective disagree", lambda t: _spec(t, metric="val_loss", mode="min", objectives=[{"metric": "val_accuracy", "mode": "max"}, {"metric": "val_latency_ms_p95", "mode": "min"}]), ["sweep", "{spec}"], 2, ["metric: val_loss (min)", "objectives.0: val_accuracy (max) disagree"]),
    ("four objectives", lambda t: _spec(t, objectives=[{"metric": m, "mode": "min" if m in ("val_loss", "val_latency_ms_p95") else "max"} for m in ("val_accuracy", "val_f1_macro", "val_loss", "val_latency_ms_p95")]), ["sweep", "{spec}"], 2, ["objectives: List should have at most 3 items"]),
    ("empty choice list", lambda t: _spec(t, search_space__batch_size={"type": "choice", "values": []}), ["sweep", "{spec}"], 2, ["search_space.batch_size.values"]),
    ("inverted range", lambda t: _spec(t, search_space__learning_rate={"type": "loguniform", "low": 1e-2, "high": 1e-4}), ["sweep", "{spec}"], 2, ["search_space.learning_rate"]),
    ("sanity label not a label", lambda t: _spec(t, promotion__gate__sanity_examples=[{"text": "x", "label": "neutral"}]), ["sweep", "{spec}"], 2, ["'neutral' not in label_names"]),
    # paths
    ("data file a symbolic-link loop", lambda t: _spec(t, data__files={"train": str(_loop(t, "loop.parquet")), "test": imdb_files()["test"]}), ["sweep", "{spec}"], 2, ["data.files.train", "loop.parquet", "symbolic link loop"]),
    ("data file under an unknown ~user", lambda t: _spec(t, data__files={"train": "~no_such_user_hpo/train.parquet", "test": imdb_files()["test"]}), ["sweep", "{spec}"], 2, ["data.files.train", "no user 'no_such_user_hpo'"]),
    ("data file a folder", lambda t: _spec(t, data__files={"train": str(t), "test": imdb_files()["test"]}), ["sweep", "{spec}"], 2, ["data.files.train", "a folder, not a file"]),
    ("storage under an unknown ~user", lambda t: _spec(t, storage="~no_such_user_hpo/runs"), ["sweep", "{spec}"], 2, ["storage", "no user 'no_such_user_hpo'"]),
    ("empty --storage", lambda t: _spec(t), ["sweep", "{spec}", "--storage", ""], 2, ["storage:", "(from --storage)"]),
    ("spec file a FIFO", _fifo, ["sweep", "{spec}"], 2, ["spec.yaml", "not a regular file (a FIFO)"]),
    ("spec file a symbolic-link loop", lambda t: _loop(t, "spec.yaml"), ["sweep", "{spec}"], 2, ["spec.yaml", "symbolic link loop"]),
    ("status of a symbolic-link loop", lambda t: _loop(t, "sweep"), ["status", "{tmp}/sweep"], 2, ["sweep", "symbolic link loop"]),
    ("status under an unknown ~user", lambda t: t, ["status", "~no_such_user_hpo/runs/tiny"], 2, ["no user 'no_such_user_hpo'"]),
    ("--address where nothing answers", lambda t: _spec(t), ["sweep", "{spec}", "--address", "127.0.0.1:{port}"], 1, ["--address 127.0.0.1:", "nothing answers"]),
    ("--address that is not HOST:PORT", lambda t: _spec(t), ["sweep", "{spec}", "--address", "127.0.0.1:99999"], 2, ["--address '127.0.0.1:99999'", "HOST:PORT"]),
    ("promote --dry-run a symbolic-link loop", lambda t: _loop(t, "out"), ["promote", "{tmp}", "--dry-run", "{tmp}/out"], 2, ["--dry-run", "symbolic link loop"]),
    ("promote --dry-run an existing file", lambda t: (t / "out").write_text("x"), ["promote", "{tmp}", "--dry-run", "{tmp}/out"], 2, ["--dry-run", "a file is there"]),
    ("promote --work-dir an existing file", lambda t: (t / "work").write_text("x"), ["promote", "{tmp}", "--dry-run", "{tmp}/out", "--work-dir", "{tmp}/work"], 2, ["--work-dir", "a file is there"]),
    ("dashboard --port 70000", lambda t: t, ["dashboard", "{tmp}", "--port", "70000"], 2, ["--port", "'70000'", "1 to 65535"]),
    ("dashboard --port 0", lambda t: t, ["dashboard", "{tmp}", "--port", "0"], 2, ["--port", "'0'", "1 to 65535"]),
    ("schema -o under an unknown ~user", lambda t: t, ["schema", "-o", "~no_such_user_hpo/s.json"], 2, ["-o '~no_such_user_hpo/s.json'", "no user"]),
    ("schema -o a folder", lambda t: t, ["schema", "-o", "{tmp}"], 2, ["-o", "a folder; give the schema file's name"]),
    ("storage file:// with no path", lambda t: _spec(t, storage="file://"), ["sweep", "{spec}"], 2, ["storage: empty"]),
    # values YAML or Python accept and the spec does not
    ("model name empty", lambda t: _spec(t, model={"name": ""}), ["sweep", "{spec}"], 2, ["model.name", "at least 1 character"]),
    ("W&B project empty", lambda t: _spec(t, tracking__project=""), ["sweep", "{spec}"], 2, ["tracking.project"]),
    ("W&B project with a slash", lambda t: _spec(t, tracking__project="team/project"), ["sweep", "{spec}"], 2, ["tracking.project", "'team/project'"]),
    ("negative data.seed", lambda t: _spec(t, data__seed=-1), ["sweep", "{spec}"], 2, ["data.seed", "-1"]),
    ("negative training.seed", lambda t: _spec(t, training__seed=-3), ["sweep", "{spec}"], 2, ["training.seed", "-3"]),
    ("model name not a Hub id", lambda t: _spec(t, model={"name": "not a/valid//id"}), ["sweep", "{spec}"], 2, ["model.name", "'not a/valid//id'", "Hub model id"]),
    ("data hub_id not a Hub id", lambda t: _spec(t, data={"hub_id": "no such/data set", "label_names": ["negative", "positive"]}), ["sweep", "{spec}"], 2, ["data.hub_id", "'no such/data set'"]),
    ("finalists top_k true", lambda t: _spec(t, promotion__finalists__top_k=True), ["sweep", "{spec}"], 2, ["promotion.finalists.top_k", "True"]),
    ("epochs 3.0", lambda t: _spec(t, training__epochs=3.0), ["sweep", "{spec}"], 2, ["training.epochs", "3.0"]),
    ("int step larger than its range", lambda t: _spec(t, search_space__max_length={"type": "int", "low": 64, "high": 128, "step": 100}), ["sweep", "{spec}"], 2, ["search_space.max_length", "step (100)", "64..128"]),
    ("choice mixing types", lambda t: _spec(t, search_space__batch_size={"type": "choice", "values": [16, "32", True]}), ["sweep", "{spec}"], 2, ["search_space.batch_size.values", "one type", "'32' (str)"]),
    ("reduction_factor .inf", lambda t: _spec(t, scheduler__reduction_factor=float("inf")), ["sweep", "{spec}"], 2, ["scheduler.reduction_factor", "finite", "inf"]),
    ("learning_rate low .nan", lambda t: _spec(t, search_space__learning_rate__low=float("nan")), ["sweep", "{spec}"], 2, ["search_space.learning_rate.low", "finite", "nan"]),
    ("name ending in a newline", lambda t: _spec(t, name="tiny\n"), ["sweep", "{spec}"], 2, ["name:", "'tiny\\n'"]),
    ("the same key twice", lambda t: _text(t, yaml.safe_dump(tiny_spec(t / "runs"), sort_keys=False) + "name: other\n"), ["sweep", "{spec}"], 2, ["line", "the key 'name' appears twice"]),
    ("the same nested key twice", lambda t: _text(t, yaml.safe_dump(tiny_spec(t / "runs"), sort_keys=False).replace("  num_trials: 6\n", "  num_trials: 6\n  num_trials: 60\n")), ["sweep", "{spec}"], 2, ["the key 'num_trials' appears twice"]),
    ("label_column the text column", lambda t: _spec(t, data__label_column="text"), ["sweep", "{spec}"], 2, ["data.label_column: that is the text column"]),
    # data that cannot be learnt from or is not what it seems
    ("the test file is the train file", lambda t: _spec(t, data__files={"train": imdb_files()["train"], "test": imdb_files()["train"]}), ["sweep", "{spec}"], 2, ["data.files.test", "the train file"]),
    ("the test file a byte copy of the train file", lambda t: _spec(t, data__files={"train": imdb_files()["train"], "test": str(shutil.copy(imdb_files()["train"], t / "copy.parquet"))}), ["sweep", "{spec}"], 2, ["data.files.test", "copy.parquet", "byte-for-byte copy of the train file"]),
    ("texts only markup or invisible characters", lambda t: _with_data(t, _REVIEWS + [("<br /><br />", "positive"), ("\u200b\u200d \ufeff", "negative"), ("&nbsp; <p></p>", "positive")]), ["sweep", "{spec}"], 2, ["train split", "3 text(s)", "nothing to learn from", "row 20"]),
    ("labels mixing ids and names", lambda t: _with_data(t, _REVIEWS + [("fine", 1)]), ["sweep", "{spec}"], 2, ["train split", "column 'label'", "mixes label ids and names (1 and 'positive')"]),
    ("labels that are lists", lambda t: _with_data(t, _REVIEWS + [("fine", ["positive"])]), ["sweep", "{spec}"], 2, ["train split", "column 'label'", "row 20", "list"]),
    # sweep folders damaged by hand
    ("status of a sweep whose stored spec is not UTF-8", lambda t: _stored_sweep(t, spec=b"name: \xff\xfe\n"), ["status", "{tmp}/sweep"], 1, ["hpo/spec.yaml", "not UTF-8"]),
    ("status of a sweep with a params.json cut short", lambda t: _stored_sweep(t, params=b'{"learning_rate": 0.0'), ["status", "{tmp}/sweep"], 0, ["warning:", "tiny_00001/params.json", "not valid JSON"]),
    ("status of a sweep with its data.json cut short", lambda t: _stored_sweep(t, **{"data.json": b'{"fingerprint": "ab'}), ["status", "{tmp}/sweep"], 0, ["warning:", "hpo/data.json", "not valid JSON"]),
    ("status of a sweep with the finalists' plan cut short", lambda t: _stored_sweep(t, **{"finalists__plan.json": b'{"metric": "val_'}), ["status", "{tmp}/sweep"], 0, ["warning:", "finalists/plan.json: damaged (not valid JSON"]),
    ("status of a file", lambda t: (t / "afile").write_text("x"), ["status", "{tmp}/afile"], 1, ["afile: a file, not a sweep folder"]),
    # warm start from earlier sweeps
    ("--warm-start a folder that is no sweep", lambda t: _spec(t), ["sweep", "{spec}", "--warm-start", "{tmp}"], 2, ["warm_start:", "not a sweep folder"]),
    ("--warm-start a sweep with no ended trial", lambda t: _stored_sweep(t) and _spec(t), ["sweep", "{spec}", "--warm-start", "{tmp}/sweep"], 2, ["warm_start:", "sweep", "no trial that ended with a value of val_accuracy"]),
    ("--warm-start a sweep of another metric", lambda t: _stored_sweep(t, spec=yaml.safe_dump(tiny_spec(t / "runs", metric="val_loss", mode="min")).encode()) and _spec(t), ["sweep", "{spec}", "--warm-start", "{tmp}/sweep"], 2, ["warm_start:", "sweep", "val_loss (min)", "val_accuracy (max)"]),
    ("warm_start naming a sweep twice", lambda t: _spec(t, warm_start=["runs/a", "runs/a"]), ["sweep", "{spec}"], 2, ["warm_start:", "'runs/a' is given twice"]),
    ("--warm-start with --resume", lambda t: t, ["sweep", "--resume", "{tmp}", "--warm-start", "{tmp}"], 2, ["--warm-start cannot change it"]),
    ("submit with a local --warm-start", lambda t: _spec(t, storage="s3://bucket/x"), ["submit", "{spec}", "--address", "http://127.0.0.1:9", "--working-dir", "{tmp}", "--warm-start", "{tmp}"], 2, ["warm_start.0", "a folder on this machine", "object storage"]),
    ("--check with a bad --warm-start", lambda t: _spec(t), ["sweep", "{spec}", "--check", "--warm-start", "{tmp}/none"], 2, ["warm_start:", "none: not a sweep folder"]),
    ("promote a sweep with a params.json cut short", lambda t: _stored_sweep(t, params=b'{"learning_rate": 0.0'), ["promote", "{tmp}/sweep", "--dry-run", "{tmp}/out"], 1, ["tiny_00001/params.json", "not valid JSON"]),
]


@pytest.mark.parametrize("make,args,code,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_its_culprit_named(make, args, code, names, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    case = tmp_path / "case"
    case.mkdir()
    spec = make(case)
    argv = [a.format(spec=spec, tmp=case, port=free_port()) for a in args]
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
    assert "unexpected error" not in text
    assert "Traceback" not in text
    assert len(text) < 20_000  # a message, not a dump of the input
    if code:  # one message, every line of it short: values shown are cut short
        assert text.count("error:") == 1 and max(map(len, text.splitlines())) < 1_000, text[-3000:]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written or started


def test_at_least_eighty_cases():
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)



# ------------------------------------------------------------------------- services that do not answer
def _closed_url() -> str:
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


# ------------------------------------------------------------------------------------- out of memory
# What Ray's memory monitor reports when it kills a worker: a first line, then a page about the node's processes.
RAY_OOM_REPORT = (
    "Task was killed due to the node running low on memory.\n"
    "Memory on the node (IP: 10.0.0.7, ID: 5c1d) where the task (actor ID: 9f2e, name=ImplicitFunc.__init__, pid=4242, "
    "memory used=3.10GB) was running was 7.48GB / 7.77GB (0.962), which exceeds the memory usage threshold of 0.95. "
    "Ray killed this worker (ID: 77ab) because it was the most recently scheduled task.\n"
    "Top 10 memory users:\nPID\tMEM(GB)\tCOMMAND\n" + "".join(f"{4000 + i}\t0.{i}\tray::ImplicitFunc.train\n" for i in range(40))
)


def test_out_of_memory_is_recognised_in_every_form_ray_raises_it():
    from ray.exceptions import OutOfMemoryError

    from hpo.core.errors import is_out_of_memory

    assert is_out_of_memory(OutOfMemoryError(RAY_OOM_REPORT))
    assert is_out_of_memory(RuntimeError("3 worker(s) were killed due to the node running low on memory. " + RAY_OOM_REPORT))
    try:
        try:
            raise OutOfMemoryError(RAY_OOM_REPORT)
        except OutOfMemoryError as inner:
            raise RuntimeError("Training failed") from inner
    except RuntimeError as outer:
        assert is_out_of_memory(outer)
    assert not is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))  # a GPU's own, not Ray's
    assert not is_out_of_memory(ValueError("something else"))


class _TunerKilledForMemory:
    """A Tune run that Ray's memory monitor ends, as ``Tuner.fit`` raises it."""

    def fit(self):
        raise RuntimeError("1 worker(s) were killed due to the node running low on memory. " + RAY_OOM_REPORT)


def test_a_tune_run_ended_by_the_memory_monitor_is_one_line_saying_what_to_lower():
    from hpo.core.errors import OutOfMemory
    from hpo.tune.run import run_tune

    with pytest.raises(OutOfMemory) as caught:
        run_tune(_TunerKilledForMemory(), "the finalists' runs")
    text = str(caught.value)
    assert "\n" not in text and "Memory on the node" not in text and len(text) < 400
    for said in ("the finalists' runs", "ran out of memory", "budget.max_concurrent", "training.batch_size", "training.max_length", "rerun the same command", "checkpoints"):
        assert said in text, said
    assert "Memory on the node" in str(caught.value.__cause__)  # kept for --debug


def test_the_cli_says_out_of_memory_in_one_line_and_shows_rays_report_only_with_debug(tmp_path, capsys, monkeypatch):
    import hpo.promotion.promote as promotion

    def killed(path, options):
        raise RuntimeError("2 worker(s) were killed due to the node running low on memory. " + RAY_OOM_REPORT)

    monkeypatch.setattr(promotion, "promote", killed)
    assert main(["promote", str(tmp_path), "--dry-run", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected error" not in err and "Memory on the node" not in err, err
    assert err.startswith("hpo promote: error: the finalists' runs or the retrain: the node ran out of memory") and "rerun the same command" in err
    with pytest.raises(RuntimeError, match="Memory on the node"):
        main(["--debug", "promote", str(tmp_path), "--dry-run", str(tmp_path / "out")])

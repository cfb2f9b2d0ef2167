"""What a W&B user sees of a sweep, read from the offline run files of the session's real tiny sweep (what
``wandb sync`` uploads): each trial's summary holds its best value and round, its outcome is a tag, the
sweep run's table is ``hpo status``'s, the runs table ranks the trials as ``hpo status`` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.core.results import Sweep, load_sweep
from hpo.tune.wandb_callback import outcome_tag
from tests.wandb_records import OfflineRun, runs_as_synced


def trial_runs(path: Path, extra: list[Path] = ()) -> dict[str, OfflineRun]:
    """The trials' runs as synced, with ``extra`` run files (the promotion's) synced along."""
    files = [*path.glob(f"{load_sweep(path).spec.name}_*/wandb/offline-run-*/run-*.wandb"), *extra]
    return {k: r for k, r in runs_as_synced(files).items() if r.job_type == "trial"}


def sweep_runs(path: Path) -> dict[str, OfflineRun]:
    return runs_as_synced(path.glob("hpo/wandb/offline-run-*/run-*.wandb"))


def ranked_like_the_runs_table(sweep: Sweep, runs: dict[str, OfflineRun]) -> list[tuple[float, str]]:
    """(best value, trial id), best first, as the W&B runs table lists the trials sorted by the summary's
    best value (``val_accuracy.max``), then by name (``hpo status`` lists equal values by trial name)."""
    metric, mode = sweep.spec.metric, sweep.spec.mode
    trials = sorted((r for r in runs.values() if r.job_type == "trial"), key=lambda r: (-r.summary[metric][mode] if mode == "max" else r.summary[metric][mode], r.name))
    return [(r.summary[metric][mode], r.run_id) for r in trials]


def assert_trial_runs_tell_the_sweep(path: Path, winner: str | None = None, extra: list[Path] = ()) -> None:
    """One run per trial, each with its best value and round in the summary (the rule ``hpo status``
    uses), its outcome as a tag, the rounds as its x-axis, rungs and parameters in the config, and the
    sweep's dataset as an input; sorted by best value, the runs rank as ``hpo status`` ranks them."""
    sweep = load_sweep(path)
    spec, metric, mode = sweep.spec, sweep.spec.metric, sweep.spec.mode
    runs = trial_runs(path, extra)
    assert set(runs) == {t.trial_id for t in sweep.trials if t.rounds}
    fingerprint = sweep.data["fingerprint"]
    for t in sweep.trials:
        run, (value, rnd) = runs[t.trial_id], t.best(metric, mode)
        assert run.summary[metric][mode] == pytest.approx(value), t.trial_id
        assert run.summary["best_round"] == rnd, t.trial_id
        expected = (outcome_tag(t.outcome), "winner") if t.trial_id == winner else (outcome_tag(t.outcome),)
        assert run.tags == expected, (t.trial_id, t.outcome, run.tags)
        assert run.config["rungs"] == spec.scheduler.rungs()
        assert {k: run.config[k] for k in t.params} == t.params
        assert {"name": "val_*", "step_metric": "round", "summary": []} in run.metrics
        assert {"name": metric, "step_metric": "round", "summary": sorted([mode, "last"])} in [{**m, "summary": sorted(m["summary"])} for m in run.metrics]
        assert [(a["name"], a["type"]) for a in run.used] == [(f"data-{fingerprint[:16]}", "dataset")]
        assert run.used[0]["metadata"]["fingerprint"] == fingerprint
        assert sorted(run.used[0]["references"]) == ["test", "train"]  # references to the files, not copies
    in_wandb = ranked_like_the_runs_table(sweep, runs)
    in_status = [(value, t.trial_id) for t, value, _ in sweep.ranked()]
    assert [t for _, t in in_wandb] == [t for _, t in in_status]
    assert [v for v, _ in in_wandb] == pytest.approx([v for v, _ in in_status])


def sweep_table(run: OfflineRun, run_file: Path) -> dict:
    info = run.summary["trials"]
    assert info["_type"] == "table-file"
    return json.loads((run_file.parent / "files" / info["path"]).read_text())


def assert_sweep_run_tells_the_sweep(path: Path) -> None:
    sweep = load_sweep(path)
    files = sorted(path.glob("hpo/wandb/offline-run-*/run-*.wandb"))
    runs = sweep_runs(path)
    assert len(runs) == 1, sorted(runs)  # a resume updates the same run
    (run_id, run), = runs.items()
    assert json.loads((path / "hpo" / "wandb-sweep-run.json").read_text())["run_id"] == run_id
    assert run.job_type == "sweep" and run.group == sweep.spec.name
    last = max((f for f in files if f.name == f"run-{run_id}.wandb"), key=lambda f: f.parent.name)
    table = sweep_table(run, last)
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    metric = sweep.spec.metric
    assert [r["trial"] for r in rows] == [t.trial_id for t, _, _ in sweep.ranked()]  # hpo status's order
    for (t, value, rnd), row in zip(sweep.ranked(), rows):
        assert row[f"best {metric}"] == pytest.approx(value) and row["best round"] == rnd
        assert row["outcome"] == t.outcome and row["trial seconds"] > 0
        assert {k: row[k] for k in t.params} == pytest.approx(t.params)
    assert run.config["data"]["fingerprint"] == sweep.data["fingerprint"]
    assert run.config["data"]["class_counts"] == sweep.data["class_counts"]
    assert run.config["search_space"] == sweep.spec.model_dump(mode="json")["search_space"]
    assert run.summary["best trial"] == sweep.winner()[0].trial_id
    assert [a["type"] for a in run.logged if a["type"] == "dataset"] == ["dataset"]


def test_each_trial_run_holds_its_best_value_round_and_outcome_and_ranks_as_hpo_status(tiny_sweep):
    assert_trial_runs_tell_the_sweep(tiny_sweep["path"])


def test_the_sweep_run_holds_the_trials_table_of_hpo_status_the_spec_and_the_data(tiny_sweep):
    assert_sweep_run_tells_the_sweep(tiny_sweep["path"])


def test_the_dataset_artifact_references_files_buckets_or_the_hub_and_is_named_by_the_fingerprint(tmp_path):
    import wandb

    from hpo.core.spec import parse_spec
    from hpo.sweep.tracking import dataset_ref
    from tests.conftest import tiny_spec

    raw = tiny_spec(tmp_path / "runs")
    data = {"fingerprint": "ab" * 32, "label_names": ["negative", "positive"], "class_counts": {"train": {"negative": 1, "positive": 1}}}
    local = dataset_ref(parse_spec(raw), data)
    assert local.name == f"data-{'ab' * 8}" and local.metadata["fingerprint"] == "ab" * 32
    assert local.references["train"].startswith("file:///") and local.references["train"].endswith("/train.parquet")
    raw["data"]["files"] = {"train": "s3://data/imdb/train.parquet?endpoint_override=127.0.0.1:9000", "test": "s3://data/imdb/test.parquet"}
    assert dataset_ref(parse_spec(raw), data).references == {"train": "s3://data/imdb/train.parquet", "test": "s3://data/imdb/test.parquet"}
    raw["data"] = {**{k: v for k, v in raw["data"].items() if k != "files"}, "hub_id": "stanfordnlp/imdb"}
    hub = dataset_ref(parse_spec(raw), data)
    assert hub.references == {"stanfordnlp__imdb": "https://huggingface.co/datasets/stanfordnlp/imdb"}
    # references only: nothing is read or fetched, nothing copied
    entries = hub.artifact(wandb).manifest.entries
    assert [(e.ref, e.local_path) for e in entries.values()] == [("https://huggingface.co/datasets/stanfordnlp/imdb", None)]
    assert dataset_ref(parse_spec(raw), {}) is None  # before the data was checked there is nothing to name


def test_outcome_tags_are_the_words_of_hpo_status_and_a_failure_keeps_its_reason_for_the_notes():
    from hpo.core.results import CONVERGED, ERRORED, FINISHED, STOPPED

    assert [outcome_tag(o) for o in (FINISHED, STOPPED, CONVERGED, ERRORED)] == [FINISHED, STOPPED, CONVERGED, ERRORED]
    assert outcome_tag("failed: diverged: training loss nan in round 2") == "failed"

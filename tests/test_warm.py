"""Warm start: earlier sweeps' ended trials translated into a new sweep's space (parameters outside it dropped and
named, trials that do not cover it left out and counted), the ranking that decides which configurations run first
(for ``max`` and ``min``), refusals of what cannot start a sweep, the searcher's study that holds them before it
draws, and one real tiny sweep warm-started from the session's sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.core.errors import WarmStartError
from hpo.core.spec import dump_spec, parse_spec
from hpo.core.storage import META_DIR, SPEC_FILE
from hpo.core.warm import WarmTrial, best_first, first_count, load_warm_start, ranked
from tests.conftest import run_cli, tiny_spec, write_spec


def planted_sweep(folder: Path, spec: dict, trials: list[dict]) -> Path:
    """A sweep folder as ``hpo sweep`` leaves it, written by hand: its stored spec, Tune's state of each trial, and
    each trial's parameters and rounds. A trial: ``id``, ``params``, ``curve`` (the metric by round), optional
    ``planned`` (rounds it would run; fewer in ``curve``: stopped early), ``status``, ``failure``."""
    metric = spec.get("metric", "val_accuracy")
    (folder / META_DIR).mkdir(parents=True)
    (folder / META_DIR / SPEC_FILE).write_text(dump_spec(parse_spec(spec)))
    entries = []
    for t in trials:
        sub = folder / f"{spec['name']}_{t['id']}"
        sub.mkdir()
        (sub / "params.json").write_text(json.dumps(t["params"]))
        planned = t.get("planned", len(t["curve"]))
        rows = [
            {"trial_id": t["id"], "training_iteration": i, "round": i, "rounds_planned": planned, "converged": False, metric: v}
            for i, v in enumerate(t["curve"], 1)
        ]
        if t.get("failure"):
            rows[-1]["failure"] = t["failure"]
        (sub / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        meta = {"trial_id": t["id"], "status": t.get("status", "TERMINATED"), "config": t["params"]}
        entries.append([json.dumps(meta), json.dumps({"last_result": rows[-1] if rows else {}})])
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": entries}))
    return folder


def new_spec(tmp_path: Path, earlier: list[Path | str], **overrides) -> object:
    return parse_spec({**tiny_spec(tmp_path / "runs", name="new", **overrides), "warm_start": [str(p) for p in earlier]})


LR_WD = {
    "learning_rate": {"type": "loguniform", "low": 5.0e-4, "high": 5.0e-3},
    "weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1},
}


def test_parameters_outside_the_new_space_are_dropped_named_and_counted(tmp_path):
    earlier_space = {**LR_WD, "learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}, "dropout": {"type": "uniform", "low": 0.0, "high": 0.3}}
    earlier = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier", search_space=earlier_space), [
        {"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.01, "dropout": 0.1}, "curve": [0.6, 0.7]},
        {"id": "b", "params": {"learning_rate": 2e-4, "weight_decay": 0.02, "dropout": 0.2}, "curve": [0.5, 0.55]},
        {"id": "c", "params": {"learning_rate": 3e-3, "weight_decay": 0.05, "dropout": 0.0}, "curve": [0.65, 0.8]},
    ])
    lines: list[str] = []
    warm = load_warm_start(new_spec(tmp_path, [earlier]), lines.append)
    assert sorted(t.trial_id for t in warm.trials) == ["a", "c"]
    assert all(set(t.params) == set(LR_WD) for t in warm.trials)  # dropout is not entered: the new space lacks it
    (source,) = warm.sources
    assert (source.ended, source.taken, source.left_out_trials) == (3, 2, 1)
    assert source.dropped == {"dropout (not searched here)": 3, "learning_rate (outside loguniform 0.0005..0.005)": 1}
    assert source.left_out == {"learning_rate": 1}
    dropped = [line for line in lines if "dropped" in line and line.startswith("warning:")]
    assert len(dropped) == 1 and "dropout (not searched here) from 3 trials" in dropped[0] and "learning_rate (outside" in dropped[0]
    assert any("1 of 3 ended trials left out" in line and "learning_rate (1)" in line for line in lines)
    record = warm.record()
    assert record["sources"][0]["path"] == str(earlier) and record["sources"][0]["taken"] == 2


def test_a_parameter_the_earlier_sweep_never_searched_leaves_its_trials_out(tmp_path):
    earlier = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier", search_space={"learning_rate": LR_WD["learning_rate"]}), [
        {"id": "a", "params": {"learning_rate": 1e-3}, "curve": [0.6, 0.7]},
        {"id": "b", "params": {"learning_rate": 2e-3}, "curve": [0.6, 0.75]},
    ])
    lines: list[str] = []
    warm = load_warm_start(new_spec(tmp_path, [earlier]), lines.append)
    assert warm.trials == [] and warm.first == [] and warm.sources[0].left_out == {"weight_decay": 2}
    assert any("2 of 2 ended trials left out: they lack a value for weight_decay (2)" in line for line in lines)


def test_values_are_held_as_the_new_space_holds_them(tmp_path):
    earlier_space = {"batch_size": {"type": "choice", "values": [16, 32, 64]}, "max_length": {"type": "int", "low": 32, "high": 128, "step": 16}}
    new_space = {"batch_size": {"type": "choice", "values": [32, 64]}, "max_length": {"type": "int", "low": 64, "high": 128, "step": 32}}
    earlier = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier", search_space=earlier_space), [
        {"id": "a", "params": {"batch_size": 32, "max_length": 96.0}, "curve": [0.7]},  # 96 is on the new steps
        {"id": "b", "params": {"batch_size": 16, "max_length": 64}, "curve": [0.7]},  # 16 is no longer a choice
        {"id": "c", "params": {"batch_size": 64, "max_length": 112}, "curve": [0.7]},  # 112 is off the new steps
    ])
    warm = load_warm_start(new_spec(tmp_path, [earlier], search_space=new_space), lambda line: None)
    assert [(t.trial_id, t.params) for t in warm.trials] == [("a", {"batch_size": 32, "max_length": 96})]
    assert type(warm.trials[0].params["max_length"]) is int
    assert warm.sources[0].dropped == {"batch_size (outside choice 32, 64)": 1, "max_length (outside int 64..128 step 32)": 1}


def _trial(tid: str, value: float, completed: bool = True, rounds: int = 4, lr: float | None = None) -> WarmTrial:
    return WarmTrial("x", tid, {"learning_rate": lr} if lr else {"config": tid}, value, {r: value for r in range(1, rounds + 1)}, completed)


def test_best_first_for_max_and_min_with_trials_stopped_early_after_those_that_ran_to_the_end():
    trials = [_trial("a", 0.70), _trial("b", 0.90, completed=False, rounds=2), _trial("c", 0.80), _trial("d", 0.60), _trial("e", 0.95, completed=False, rounds=1)]
    assert [t.trial_id for t in ranked(trials, "max")] == ["c", "a", "d", "b", "e"]
    assert [t.trial_id for t in ranked(trials, "min")] == ["d", "a", "c", "b", "e"]
    assert best_first(trials, "max", 2) == [{"config": "c"}, {"config": "a"}]
    assert best_first(trials, "min", 1) == [{"config": "d"}]
    same = [_trial("a", 0.8, lr=1e-3), _trial("b", 0.79, lr=1e-3), _trial("c", 0.7, lr=2e-3)]
    assert best_first(same, "max", 2) == [{"learning_rate": 1e-3}, {"learning_rate": 2e-3}]  # distinct configurations
    assert [first_count(n) for n in (1, 2, 3, 6, 9, 50)] == [0, 0, 1, 2, 3, 3]


def test_the_value_is_the_last_recorded_round_and_mode_min_is_kept(tmp_path):
    loss = {"metric": "val_loss", "mode": "min"}
    earlier = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier", **loss), [
        {"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.0}, "curve": [0.50, 0.30, 0.40]},
        {"id": "b", "params": {"learning_rate": 2e-3, "weight_decay": 0.0}, "curve": [0.45, 0.35]},
        {"id": "c", "params": {"learning_rate": 4e-3, "weight_decay": 0.0}, "curve": [0.20], "planned": 3},  # stopped early
    ])
    warm = load_warm_start(new_spec(tmp_path, [earlier], budget={"num_trials": 6, "max_concurrent": 2}, **loss), lambda line: None)
    by_id = {t.trial_id: t for t in warm.trials}
    assert by_id["a"].value == 0.40 and by_id["a"].rounds == {1: 0.50, 2: 0.30, 3: 0.40}  # its last round, not its best
    assert by_id["c"].completed is False and by_id["a"].completed and by_id["b"].completed
    assert warm.first == [by_id["b"].params, by_id["a"].params]  # 0.35 before 0.40; c was stopped early


def test_a_failed_or_errored_trial_is_not_taken(tmp_path):
    earlier = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier"), [
        {"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.0}, "curve": [0.6, 0.0], "failure": "diverged: training loss nan in round 2"},
        {"id": "b", "params": {"learning_rate": 2e-3, "weight_decay": 0.0}, "curve": [0.6], "status": "ERROR"},
        {"id": "c", "params": {"learning_rate": 3e-3, "weight_decay": 0.0}, "curve": [0.7]},
        {"id": "d", "params": {"learning_rate": 4e-3, "weight_decay": 0.0}, "curve": [0.6], "status": "RUNNING", "planned": 4},
    ])
    warm = load_warm_start(new_spec(tmp_path, [earlier]), lambda line: None)
    assert [t.trial_id for t in warm.trials] == ["c"] and warm.sources[0].without_value == 2


def test_a_sweep_whose_tune_state_is_empty_gives_the_trials_its_folders_show_ended(tmp_path):
    """The way on from a sweep that cannot resume (its experiment state was emptied by a crash): its trials that ran
    all their planned rounds, or whose last round Tune marked done, are taken; one still short of them is not."""
    earlier = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier"), [
        {"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.0}, "curve": [0.6, 0.7]},
        {"id": "b", "params": {"learning_rate": 2e-3, "weight_decay": 0.0}, "curve": [0.65], "planned": 3},
        {"id": "c", "params": {"learning_rate": 3e-3, "weight_decay": 0.0}, "curve": [0.5], "planned": 3},
    ])
    done = earlier / "earlier_b" / "result.json"
    done.write_text(done.read_text().replace('"converged": false', '"converged": true, "done": true'))
    (earlier / "experiment_state-2026-01-01_00-00-00.json").write_bytes(b"")
    lines: list[str] = []
    warm = load_warm_start(new_spec(tmp_path, [earlier]), lines.append)
    assert sorted(t.trial_id for t in warm.trials) == ["a", "b"]
    assert any(line.startswith("warning:") and "experiment state is empty" in line for line in lines), lines


def test_another_metric_or_mode_is_refused_naming_both_sweeps(tmp_path):
    earlier = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier", metric="val_f1_macro"), [
        {"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.0}, "curve": [0.6]},
    ])
    with pytest.raises(WarmStartError) as err:
        load_warm_start(new_spec(tmp_path, [earlier]), lambda line: None)
    assert err.value.exit_code == 2
    text = str(err.value)
    assert str(earlier) in text and "sweep earlier" in text and "val_f1_macro (max)" in text and "sweep new" in text and "val_accuracy (max)" in text


def test_what_cannot_start_a_sweep_is_refused(tmp_path):
    running = planted_sweep(tmp_path / "running", tiny_spec(tmp_path, name="running"), [
        {"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.0}, "curve": [0.6], "status": "RUNNING", "planned": 4},
    ])
    with pytest.raises(WarmStartError, match="has no trial that ended with a value of val_accuracy"):
        load_warm_start(new_spec(tmp_path, [running]), lambda line: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WarmStartError, match="not a sweep folder"):
        load_warm_start(new_spec(tmp_path, [tmp_path / "empty"]), lambda line: None)
    with pytest.raises(WarmStartError, match="this sweep's own folder"):
        load_warm_start(new_spec(tmp_path, [tmp_path / "runs" / "new"]), lambda line: None)
    with pytest.raises(WarmStartError, match="named twice"):
        load_warm_start(new_spec(tmp_path, [running, f"file://{running}"]), lambda line: None)
    assert load_warm_start(new_spec(tmp_path, []), lambda line: None) is None


def test_fixed_settings_that_differ_are_named(tmp_path):
    earlier_spec = tiny_spec(tmp_path, name="earlier")
    earlier_spec["training"] = {**earlier_spec["training"], "epochs": 2, "batch_size": 16}
    earlier = planted_sweep(tmp_path / "earlier", earlier_spec, [{"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.0}, "curve": [0.6]}])
    lines: list[str] = []
    load_warm_start(new_spec(tmp_path, [earlier]), lines.append)
    (differ,) = [line for line in lines if "fixed settings differ" in line]
    assert "training.epochs: 2 there, 3 here" in differ and "training.batch_size: 16 there, 32 here" in differ


def test_the_spec_key_refuses_empty_and_repeated_paths(tmp_path):
    from hpo.core.errors import SpecError
    from hpo.core.spec import load_spec

    raw = tiny_spec(tmp_path / "runs")
    for paths, said in (([""], "warm_start: item 0: empty"), (["a", "a"], "'a' is given twice")):
        with pytest.raises(SpecError, match=said):
            parse_spec({**raw, "warm_start": paths})
    spec_file = write_spec(tmp_path / "s.yaml", {**raw, "warm_start": ["runs/old"]})
    assert load_spec(spec_file).warm_start == [str(Path.cwd() / "runs" / "old")]  # resolved where the command runs
    assert load_spec(spec_file, {"warm_start": ["s3://bucket/sweeps/old"]}).warm_start == ["s3://bucket/sweeps/old"]  # the flag replaces the list


def test_an_earlier_sweep_in_object_storage_is_read_there(s3, tmp_path, monkeypatch):
    from hpo.core.storage import Location

    for key, value in s3["env"].items():
        monkeypatch.setenv(key, value)
    local = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier"), [
        {"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.01}, "curve": [0.6, 0.7]},
        {"id": "b", "params": {"learning_rate": 2e-3, "weight_decay": 0.02}, "curve": [0.6, 0.8]},
    ])
    uri = f"s3://sweeps/warm-{tmp_path.name}/earlier"
    Location.parse(uri).upload_dir(local)
    warm = load_warm_start(new_spec(tmp_path, [uri]), lambda line: None)
    assert sorted(t.trial_id for t in warm.trials) == ["a", "b"] and warm.first == [{"learning_rate": 2e-3, "weight_decay": 0.02}, {"learning_rate": 1e-3, "weight_decay": 0.01}]
    assert warm.record()["sources"][0]["path"] == uri
    with pytest.raises(WarmStartError, match="not a sweep folder"):
        load_warm_start(new_spec(tmp_path, [f"s3://sweeps/warm-{tmp_path.name}/none"]), lambda line: None)


def test_a_kept_record_edited_by_hand_is_read_as_far_as_it_goes():
    from hpo.core.warm import describe_record, kept_record

    assert kept_record({}) is None and kept_record({"warm_start": [1, 2]}) is None and kept_record({"warm_start": {"sources": "x"}}) is None
    record = kept_record({"warm_start": {"sources": [{"path": "runs/a", "taken": 3, "dropped": [1]}, 7]}})
    assert describe_record(record) == ["warm start: 3 of 0 ended trials of ? (runs/a); parameters dropped: none; trials left out: 0"]


# ------------------------------------------------------------------------------------ the searcher
def test_the_study_holds_the_earlier_trials_and_the_best_run_first_once(tmp_path):
    """The earlier trials are in the study before it draws (COMPLETE with the last round's value, or PRUNED with
    their rounds); the best configurations are handed out first, in order; a restored searcher does not hand one out
    again when Tune already runs it, and hands out again one that Tune never recorded."""
    from optuna.trial import TrialState

    from hpo.tune.searcher import make_searcher

    earlier = planted_sweep(tmp_path / "earlier", tiny_spec(tmp_path, name="earlier"), [
        {"id": "a", "params": {"learning_rate": 1e-3, "weight_decay": 0.01}, "curve": [0.6, 0.7]},
        {"id": "b", "params": {"learning_rate": 2e-3, "weight_decay": 0.02}, "curve": [0.6, 0.8]},
        {"id": "c", "params": {"learning_rate": 3e-3, "weight_decay": 0.03}, "curve": [0.5], "planned": 2},
    ])
    spec = new_spec(tmp_path, [earlier], budget={"num_trials": 6, "max_concurrent": 2})
    warm = load_warm_start(spec, lambda line: None)
    search = make_searcher(spec, None, warm).searcher.searcher
    search.set_search_properties(spec.metric, spec.mode, {})
    study = search._ot_study
    assert [(t.state, t.value, t.params["learning_rate"]) for t in study.trials] == [
        (TrialState.COMPLETE, 0.7, 1e-3), (TrialState.COMPLETE, 0.8, 2e-3), (TrialState.PRUNED, None, 3e-3),
    ]
    assert study.trials[2].intermediate_values == {1: 0.5} and study.trials[0].user_attrs["warm_start_trial"] == "a"
    first = search.suggest("t1")
    assert first == {"learning_rate": 2e-3, "weight_decay": 0.02}
    search.save(str(tmp_path / "searcher-state.pkl"))  # the stored state: t1 handed out
    second = search.suggest("t2")
    assert second == {"learning_rate": 1e-3, "weight_decay": 0.01}
    search.suggest("ghost")  # a drawn configuration
    state = lambda config: {"status": "RUNNING", "config": config, "last_result": {}, "metric_analysis": {}}  # noqa: E731

    restored = make_searcher(spec, None, warm).searcher.searcher  # as Tune unpickles it: then its saved state
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    restored.reconcile({"t1": state(first), "t2": state(second)})  # Tune recorded t2 after the searcher's save
    assert restored._warm_first == []  # t2 already runs the second best: not handed out again
    drawn = restored.suggest("t3")
    assert drawn not in (first, second)

    again = make_searcher(spec, None, warm).searcher.searcher
    again.restore(str(tmp_path / "searcher-state.pkl"))
    again.reconcile({})  # Tune never recorded t1: its configuration goes back to the front
    assert again.suggest("u1") == first and again.suggest("u2") == second


# ------------------------------------------------------------------------------------ end to end
def test_a_tiny_sweep_warm_started_from_the_session_sweep_runs_its_best_first(tiny_sweep, tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from hpo.core.results import load_sweep

    earlier = load_sweep(tiny_sweep["path"])
    spec = tiny_spec(tmp_path / "runs", name="warm", budget={"num_trials": 3, "max_concurrent": 2})
    spec["scheduler"] = {**spec["scheduler"], "max_rounds": 2}
    spec["searcher"] = {**spec["searcher"], "seed": 7}
    spec["training"] = {**spec["training"], "epochs": 1}
    spec_file = write_spec(tmp_path / "warm.yaml", spec)
    result = run_cli(["sweep", str(spec_file), "--warm-start", str(tiny_sweep["path"])], tiny_sweep["env"], tmp_path, timeout=600)  # W&B offline
    assert result.returncode == 0, result.stdout[-5000:]
    assert "fixed settings differ" in result.stdout and "training.epochs: 3 there, 1 here" in result.stdout
    taken = [t for t in earlier.trials if t.rounds and t.outcome in ("finished", "stopped (ASHA)", "converged (patience)")]
    warm = load_warm_start(parse_spec({**spec, "warm_start": [str(tiny_sweep["path"])]}), lambda line: None)
    assert len(warm.trials) == len(taken) and len(warm.first) == 1
    new = load_sweep(tmp_path / "runs" / "warm")
    assert warm.first[0] == ranked(warm.trials, "max")[0].params and warm.first[0] in [t.params for t in new.trials]
    # the study: the earlier trials first, then the new sweep's in the order they were drawn, the earlier best first
    journal = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "warm" / META_DIR / "optuna.journal")))
    study = optuna.load_study(study_name="warm", storage=journal)
    assert [t.user_attrs.get("warm_start_trial") for t in study.trials[: len(taken)]] == [t.trial_id for t in taken]
    drawn = study.trials[len(taken):]
    assert len(drawn) == 3 and drawn[0].params == warm.first[0]
    assert new.data["warm_start"]["sources"][0]["taken"] == len(taken)
    status = run_cli(["status", str(tmp_path / "runs" / "warm")], tiny_sweep["env"], tmp_path, timeout=120)
    assert status.returncode == 0, status.stdout[-3000:]
    assert f"warm start: {len(taken)} of {len(taken)} ended trials of tiny ({tiny_sweep['path']})" in status.stdout.replace("\n", " ")

    # the sweep's W&B run, the card and provenance.json name the source
    from hpo.promotion.card import model_card, provenance
    from tests.test_wandb_story import sweep_runs

    (run,) = sweep_runs(tmp_path / "runs" / "warm").values()
    assert run.config["warm_start"]["sources"][0]["path"] == str(tiny_sweep["path"]) and run.config["warm_start"]["tried_first"] == warm.first
    assert run.summary["warm_start/trials"] == len(taken) and run.summary["warm_start/sources"] == str(tiny_sweep["path"])
    trial, value, rnd = new.winner()
    names = new.data["label_names"]
    metrics = {"test_accuracy": 0.8, "test_f1_macro": 0.8, "test_loss": 0.5, "test_confusion": [[1, 0], [0, 1]]}
    metrics.update({f"test_{kind}_{n}": 1.0 for kind in ("precision", "recall") for n in names})
    marker = {"training": {"seed": 0, "max_length": 64}, "balance": {"strategy": "downsample", "after": {}}}
    card = model_card(new, trial, value, rnd, marker, metrics, "me/warm")
    assert f"warm-started from earlier sweeps: `tiny` (`{tiny_sweep['path']}`, {len(taken)} trials); their best 1 configuration(s) ran first" in card
    assert provenance(new, trial, value, rnd, marker, metrics)["warm_start"] == new.data["warm_start"]

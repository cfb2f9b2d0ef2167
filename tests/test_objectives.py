"""Several objectives: the Pareto front, the searcher's multi-objective study, the latency measured by trials, the
latency gate's choice of the winner, and a two-objective sweep end to end."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpo.core.errors import GateError
from hpo.core.pareto import dominates, pareto_front
from hpo.core.results import Sweep, TrialRecord
from hpo.core.spec import parse_spec
from hpo.core.storage import Location
from tests.conftest import cli_env, run_cli, tiny_spec, write_spec
from tests.test_truncation import model_folder  # noqa: F401 - a fixture
from trainables.report import LATENCY, RoundReport, values_at_best

ACCURACY_LATENCY = [{"metric": "val_accuracy", "mode": "max"}, {"metric": LATENCY, "mode": "min"}]


# ------------------------------------------------------------------------------------ the front
def test_the_front_keeps_what_nothing_beats_on_every_objective_best_first():
    points = [("a", (0.80, 12.0)), ("b", (0.85, 20.0)), ("c", (0.78, 15.0)), ("d", (0.90, 35.0)), ("e", (0.85, 25.0)), ("f", (0.70, 5.0))]
    front = pareto_front(points, ["max", "min"])
    assert [k for k, _ in front] == ["d", "b", "a", "f"]  # c is beaten by a, e by b
    assert front[1] == ("b", (0.85, 20.0))


def test_the_front_of_two_maxima_and_of_two_minima():
    points = [("a", (1.0, 1.0)), ("b", (2.0, 0.0)), ("c", (0.5, 0.5)), ("d", (0.0, 2.0))]
    assert [k for k, _ in pareto_front(points, ["max", "max"])] == ["b", "a", "d"]
    assert [k for k, _ in pareto_front(points, ["min", "min"])] == ["d", "c", "b"]


def test_equal_points_are_all_on_the_front_in_the_order_given_and_a_tie_on_one_objective_is_decided_by_the_other():
    points = [("x", (0.8, 10.0)), ("y", (0.8, 10.0)), ("z", (0.8, 11.0)), ("w", (0.9, 10.0))]
    front = pareto_front(points, ["max", "min"])
    assert [k for k, _ in front] == ["w"]  # w beats x and y (more accurate, as fast) and z
    front = pareto_front(points[:3], ["max", "min"])
    assert [k for k, _ in front] == ["x", "y"]  # equal: neither dominates; z is as accurate but slower
    assert not dominates((0.8, 10.0), (0.8, 10.0), ["max", "min"])


def test_three_objectives_and_no_points():
    points = [("a", (0.9, 0.3, 20.0)), ("b", (0.9, 0.2, 20.0)), ("c", (0.8, 0.1, 30.0)), ("d", (0.8, 0.1, 40.0))]
    assert [k for k, _ in pareto_front(points, ["max", "min", "min"])] == ["b", "c"]
    assert pareto_front([], ["max", "min"]) == []
    with pytest.raises(ValueError, match="2 values for 3 objectives"):
        pareto_front([("a", (1.0, 2.0))], ["max", "min", "min"])


# ------------------------------------------------------------------------- a planted sweep
def _round(i: int, accuracy: float, latency: float) -> dict:
    return {"training_iteration": i, "round": i, "rounds_planned": 2, "val_accuracy": accuracy, LATENCY: latency, "converged": False}


def _sweep(tmp_path, gate_ms: float | None, trials: dict[str, list[dict]]) -> Sweep:
    raw = tiny_spec(tmp_path / "runs", objectives=ACCURACY_LATENCY)
    raw["promotion"]["gate"]["max_latency_ms_p95"] = gate_ms
    spec = parse_spec(raw)
    records = [TrialRecord(t, f"tiny_{t}", Location.parse(tmp_path / t), {}, "TERMINATED", rows) for t, rows in trials.items()]
    return Sweep(Location.parse(tmp_path), spec, {}, records)


PLANTED = {
    # the fastest: its best accuracy at round 1, faster at round 2 (not its best round: not its values)
    "fast": [_round(1, 0.70, 4.0), _round(2, 0.65, 3.0)],
    "mid": [_round(1, 0.78, 12.0), _round(2, 0.82, 9.0)],
    "slow": [_round(1, 0.80, 30.0), _round(2, 0.88, 31.0)],
    "worse": [_round(1, 0.75, 14.0), _round(2, 0.76, 15.0)],  # beaten by mid
}


def test_a_trials_values_are_those_of_its_best_round_for_the_first_objective():
    pairs = [("val_accuracy", "max"), (LATENCY, "min")]
    assert values_at_best(PLANTED["fast"], pairs) == ((0.70, 4.0), 1)
    assert values_at_best(PLANTED["slow"], pairs) == ((0.88, 31.0), 2)
    failed = RoundReport.failed("val_accuracy", "max", "diverged", 2, 2, [(LATENCY, "min")]).to_result() | {"training_iteration": 2}
    assert failed[LATENCY] == 1e9 and values_at_best([PLANTED["mid"][0], failed], pairs) == ((0.78, 12.0), 1)  # a placeholder never counts
    assert values_at_best([{"training_iteration": 1, "val_accuracy": 0.7}], pairs) is None  # no latency at that round


def test_the_sweeps_front_and_the_latency_gates_choice(tmp_path):
    sweep = _sweep(tmp_path, 10.0, PLANTED)
    assert [(t.trial_id, values, rnd) for t, values, rnd in sweep.front()] == [("slow", (0.88, 31.0), 2), ("mid", (0.82, 9.0), 2), ("fast", (0.70, 4.0), 1)]
    assert sweep.winner()[0].trial_id == "slow"  # no budget asked for: the most accurate
    trial, value, rnd = sweep.winner(ended_only=True, within_budget=True)
    assert (trial.trial_id, value, rnd) == ("mid", 0.82, 2)  # the most accurate within 10 ms
    assert [t.trial_id for t, _, _ in sweep.ranked(within_budget=True)] == ["mid", "fast"]
    assert _sweep(tmp_path, 5.0, PLANTED).winner(ended_only=True, within_budget=True)[0].trial_id == "fast"
    assert _sweep(tmp_path, None, PLANTED).winner(ended_only=True, within_budget=True)[0].trial_id == "slow"  # no gate: no budget


def test_no_trial_within_the_latency_gate_is_refused_with_the_front(tmp_path):
    sweep = _sweep(tmp_path, 2.0, PLANTED)
    with pytest.raises(GateError) as err:
        sweep.winner(ended_only=True, within_budget=True)
    assert err.value.exit_code == 3
    message = str(err.value)
    assert "max_latency_ms_p95 (2 ms)" in message and "mid: val_accuracy 0.82, val_latency_ms_p95 9 (round 2)" in message
    assert message.index("slow:") < message.index("mid:") < message.index("fast:") and "worse" not in message


# ----------------------------------------------------------------------------------- the searcher
@pytest.mark.parametrize("searcher", ["tpe", "random"])
def test_the_study_is_multi_objective_and_told_the_values_at_the_best_round(tmp_path, searcher):
    from hpo.tune.searcher import make_searcher

    spec = parse_spec(tiny_spec(tmp_path / "runs", name="two", objectives=ACCURACY_LATENCY, searcher={"type": searcher, "seed": 0}))
    search = make_searcher(spec, Location.parse(tmp_path)).searcher.searcher
    for trial_id, rows in PLANTED.items():
        assert search.suggest(trial_id) is not None
        for row in rows[:-1]:
            search.on_trial_result(trial_id, row)
        search.on_trial_complete(trial_id, rows[-1])
    study = optuna.load_study(study_name="two", storage=JournalStorage(JournalFileBackend(str(tmp_path / "hpo" / "optuna.journal"))))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"] and study.metric_names == ["val_accuracy", LATENCY]
    assert [t.values for t in study.trials] == [[0.70, 4.0], [0.82, 9.0], [0.88, 31.0], [0.76, 15.0]]
    assert sorted(t.number for t in study.best_trials) == [0, 1, 2]  # Optuna's front is hpo's
    assert search.suggest("next") is not None  # it draws from the multi-objective study


def test_a_stopped_or_failed_trial_of_a_multi_objective_study(tmp_path):
    from hpo.tune._internals import optuna_parts
    from hpo.tune.searcher import make_searcher

    spec = parse_spec(tiny_spec(tmp_path / "runs", name="two", objectives=ACCURACY_LATENCY))
    search = make_searcher(spec, None).searcher.searcher
    search.suggest("stopped")
    search.on_trial_complete("stopped", {**_round(1, 0.6, 5.0), "rounds_planned": 6})  # ASHA stopped it at round 1 of 6
    search.suggest("failed")
    failed = RoundReport.failed("val_accuracy", "max", "diverged", 1, 6, [(LATENCY, "min")]).to_result() | {"training_iteration": 1}
    search.on_trial_complete("failed", failed)
    states = [t.state for t in optuna_parts(search).study.trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL]


# ----------------------------------------------------------------------------------- the trial
def test_a_trial_measures_latency_only_when_an_objective_asks(tmp_path):
    one = parse_spec(tiny_spec(tmp_path / "runs")).trial_settings()
    two = parse_spec(tiny_spec(tmp_path / "runs", objectives=ACCURACY_LATENCY)).trial_settings()
    accuracy_f1 = parse_spec(tiny_spec(tmp_path / "runs", objectives=[ACCURACY_LATENCY[0], {"metric": "val_f1_macro", "mode": "max"}])).trial_settings()
    assert not one.measures_latency and two.measures_latency and not accuracy_f1.measures_latency


def test_batch1_latency_is_measured_as_evaluation_runs_the_model():
    import numpy as np
    import torch

    from trainables.training import LATENCY_TEXTS, LATENCY_WARMUP, batch1_latency_ms, timed_calls

    seen = []
    seconds = timed_calls(seen.append, list(range(5)), 2, "cpu")
    assert seen == [0, 1, 0, 1, 2, 3, 4] and len(seconds) == 5  # the warm-up calls are not timed

    class Model(torch.nn.Module):  # records the batches it is given
        def __init__(self):
            super().__init__()
            self.shapes = []

        def forward(self, input_ids, **kw):
            self.shapes.append(tuple(input_ids.shape))
            return None

    class Data:
        labels = np.zeros(100, dtype=np.int64)

        def __len__(self):
            return 100

        def check(self, truncation):
            pass

        def lengths(self, max_length):
            return np.full(100, 6)

        def row(self, i, max_length, truncation):
            return np.arange(4)

    from trainables.data import SpecialIds
    from trainables.settings import TrainingSpec

    model = Model()
    ms = batch1_latency_ms(model, Data(), SpecialIds(cls=1, sep=2, pad=0), TrainingSpec(), torch.device("cpu"))
    assert ms >= 0 and model.shapes == [(1, 6)] * (LATENCY_WARMUP + LATENCY_TEXTS)  # batch 1, 32 texts after 2 warm-ups


def test_promotions_serving_figures_come_from_the_same_timing(model_folder):
    """The promoted model's latency (the card, the gate) is timed by the code that times a trial's."""
    from hpo.promotion.evidence import LATENCY_CALLS, serving

    figures = serving(model_folder[0], ["a fine film", "dull and far too long", "well acted"] * 20, seed=0)
    assert figures["batch1_calls"] == LATENCY_CALLS and 0 < figures["batch1_p50_ms"] <= figures["batch1_p95_ms"]
    assert figures["batch32_texts"] == 60 and figures["batch32_texts_per_s"] > 0 and figures["hardware"]["device"] == "cpu"


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_a_two_objective_sweep_shows_its_front(tmp_path):
    """A tiny sweep of accuracy against latency (3 trials of 2 rounds): hpo status prints the front."""
    raw = tiny_spec(tmp_path / "runs", name="front", objectives=ACCURACY_LATENCY)
    raw["data"]["train_size"] = 600
    raw["training"]["epochs"] = 1
    raw["scheduler"] = {"type": "asha", "max_rounds": 2, "grace_period": 1, "reduction_factor": 2}
    raw["budget"] = {"num_trials": 3, "max_concurrent": 2}
    raw["search_space"]["max_length"] = {"type": "choice", "values": [32, 128]}
    raw["promotion"]["gate"]["max_latency_ms_p95"] = 10_000.0
    env = cli_env(tmp_path)
    spec_file = write_spec(tmp_path / "front.yaml", raw)
    result = run_cli(["sweep", str(spec_file)], env, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    status = run_cli(["status", str(tmp_path / "runs" / "front")], env, tmp_path)
    assert status.returncode == 0, status.stdout[-4000:]
    assert f"Pareto front of val_accuracy (max), {LATENCY} (min)" in status.stdout, status.stdout
    assert "best within promotion.gate.max_latency_ms_p95 (10000 ms):" in status.stdout
    from hpo.core.results import load_sweep

    sweep = load_sweep(tmp_path / "runs" / "front")
    front = sweep.front()
    assert front and all(t.trial_id in status.stdout for t, _, _ in front)
    rounds = [row for t in sweep.trials for row in t.rounds]
    assert rounds and all(row[LATENCY] > 0 for row in rounds)  # every round measured it
    study = optuna.load_study(study_name="front", storage=JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "front" / "hpo" / "optuna.journal"))))
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert told and all(len(t.values) == 2 for t in told)
    from tests.test_wandb_story import sweep_runs

    path = tmp_path / "runs" / "front"
    ((run_id, run),) = sweep_runs(path).items()  # the sweep's W&B run records the front
    info = run.summary["pareto_front"]
    table = json.loads(next(path.glob(f"hpo/wandb/offline-run-*/files/{info['path']}")).read_text())
    assert table["columns"] == ["trial", "val_accuracy", LATENCY, "round", "outcome"]
    assert [row[0] for row in table["data"]] == [t.trial_id for t, _, _ in front] and run.summary["pareto_front/trials"] == ", ".join(t.trial_id for t, _, _ in front)
    assert [row[1:3] for row in table["data"]] == [pytest.approx(list(values)) for _, values, _ in front]
    assert run.config["objectives"] == ACCURACY_LATENCY

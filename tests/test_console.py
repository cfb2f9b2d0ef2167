"""The sweep's live view names the best trial by the rule ``hpo status`` ranks trials with."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs
import pytest

from hpo.core.results import TrialRecord
from hpo.tune.console import SweepConsole
from trainables.report import RoundReport


class Trial:
    def __init__(self, trial_id: str):
        self.trial_id, self.status, self.config, self.last_result = trial_id, "RUNNING", {"learning_rate": 0.1}, {}

    def __str__(self) -> str:
        return self.trial_id


def status_best(rounds: dict[str, list[dict]], metric: str, mode: str) -> tuple[float, int, str] | None:
    """The best (value, round, trial) as ``hpo status`` ranks them: best value, then trial folder order."""
    found = [(*b, t) for t in sorted(rounds) if (b := TrialRecord(t, t, None, {}, "RUNNING", rounds[t]).best(metric, mode))]
    if not found:
        return None
    value = max(f[0] for f in found) if mode == "max" else min(f[0] for f in found)
    return next(f for f in found if f[0] == value)


def test_the_best_so_far_is_the_trial_hpo_status_ranks_first_ties_included():
    rng = random.Random(0)
    for mode in ("max", "min"):
        view = SweepConsole("s", "val_accuracy", mode, 40, "disabled", ["learning_rate"])
        trials = [Trial(f"t{i:02d}") for i in range(40)]
        rounds: dict[str, list[dict]] = {}
        for step in range(300):
            trial = rng.choice(trials)
            rnd = len(rounds.get(trial.trial_id, [])) + 1
            result = {"training_iteration": rnd, "val_accuracy": rng.choice([0.5, 0.6, 0.7, 0.75])}
            if rng.random() < 0.05:  # a failure's placeholder value never counts
                result["failure"] = "diverged"
            rounds.setdefault(trial.trial_id, []).append(result)
            view.on_trial_result(step, trials, trial, result)
            best = view._best()
            assert (best and (best[0], best[1], best[2].trial_id)) == status_best(rounds, "val_accuracy", mode)


class StoredTrial(Trial):
    """A trial as Tune restores it after a crash: its status and last result, its folder where Tune stores it
    (``result.json`` as a sweep writes it), and an empty staging copy (a resumed driver's)."""

    def __init__(self, trial_id: str, root: Path, status: str, values: list[float], planned: int = 4):
        super().__init__(trial_id)
        rows = [{**RoundReport(i, planned, {"val_accuracy": v}).to_result(), "training_iteration": i, "trial_id": trial_id} for i, v in enumerate(values, 1)]
        folder = root / "exp" / f"exp_{trial_id}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(self.config))
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.status, self.last_result, self.rows = status, rows[-1], rows
        self.path, self.local_path = str(folder), str(root / "staging" / trial_id)
        self.storage = SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem())
        self.max_failures, self.num_failures, self.error_file = 2, 0, None


def test_a_resumed_sweeps_view_starts_from_the_stored_rounds(tmp_path, capsys):
    """After a crash: trial a had ended (its best 0.5050 at round 2, its last 0.4950), b runs on from its 3
    stored rounds. The view's best is the one ``hpo status`` shows, b ends after 4 rounds, not 1."""
    a = StoredTrial("a", tmp_path, "TERMINATED", [0.48, 0.5050, 0.49, 0.4950])
    b = StoredTrial("b", tmp_path, "PENDING", [0.45, 0.47, 0.49])
    view = SweepConsole("s", "val_accuracy", "max", 3, "disabled", ["learning_rate"])
    view.setup()
    trials = [a, b]
    view.on_step_begin(0, trials)
    best = view._best()
    assert (best[0], best[1], best[2].trial_id) == (0.5050, 2, "a")
    stored = {t.trial_id: t.rows for t in trials}
    assert (best[0], best[1], best[2].trial_id) == status_best(stored, "val_accuracy", "max")
    b.status = "RUNNING"
    result = {**RoundReport(4, 4, {"val_accuracy": 0.50}).to_result(), "training_iteration": 4}
    view.on_trial_result(1, trials, b, result)
    b.status = "TERMINATED"
    view.on_trial_complete(2, trials, b)
    view.close()
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "2/3 ended  b finished after 4 round(s): val_accuracy 0.5000 (round 4)  | best 0.5050 (a)" in line, line


def test_a_trial_tune_runs_again_after_a_failure_is_one_line(tmp_path, capsys):
    """A trial whose storage stalled: Tune writes the traceback to its error.txt and runs it again; the
    console says so in one line, with the error."""
    trial = StoredTrial("c", tmp_path, "RUNNING", [0.5])
    error = tmp_path / "staging" / "c" / "error.txt"
    error.parent.mkdir(parents=True)
    error.write_text(
        "Failure # 1 (occurred at 2026-01-01_00-00-00)\nray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n"
        "Traceback (most recent call last):\n  File \"trial.py\", line 1, in report\n"
        "OSError: When uploading to s3://sweeps/x: AWS Error NETWORK_CONNECTION during PutObject operation: Timeout was reached\n"
    )
    trial.error_file, trial.num_failures = str(error), 1
    view = SweepConsole("s", "val_accuracy", "max", 3, "disabled", ["learning_rate"])
    view.setup()
    view.on_trial_recover(0, [trial], trial)
    view.close()
    out = capsys.readouterr().out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert "c failed (OSError: When uploading to s3://sweeps/x: AWS Error NETWORK_CONNECTION" in out
    assert "run again from its last checkpoint (failure 1 of 2 allowed)" in out


@pytest.mark.parametrize("handler", ["ray's", "none"], ids=["ray-handler", "no-handler-as-once-ray-runs"])
def test_tunes_warnings_about_a_failed_upload_are_one_line_each(handler, tmp_path, capsys):
    """Tune's syncer logs an upload of the experiment folder that failed (a storage that does not answer) with
    the upload's traceback: one line each on hpo's console, the error's last line kept; whole with --verbose.
    Before Ray starts, its log lines go through its own handler; once it runs, the ``ray`` logger has none."""
    import io
    import logging

    from ray.train._internal.storage import _FilesystemSyncer

    from hpo.tune.run import quiet_tune

    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "experiment_state-x.json").write_text("{}")
    (tmp_path / "blocked").write_text("a file where the upload's folder would go")
    ray_log = logging.getLogger("ray")
    own = list(ray_log.handlers)
    said = {}
    for verbose in (False, True):
        shown = io.StringIO()
        if handler == "none":
            ray_log.handlers = []
        else:
            before = own[0].setStream(shown)  # what Ray prints its log lines with
        try:
            with quiet_tune(verbose):
                syncer = _FilesystemSyncer(storage_filesystem=pyarrow.fs.LocalFileSystem())
                syncer.sync_up(str(tmp_path / "stage"), str(tmp_path / "blocked" / "experiment"))
                while syncer._sync_process.is_running:  # the upload fails at once
                    time.sleep(0.05)
                syncer.sync_up(str(tmp_path / "stage"), str(tmp_path / "blocked" / "experiment"))  # first says the last one failed
                try:
                    syncer.wait()
                except OSError:
                    pass
            assert ray_log.handlers == ([] if handler == "none" else own) and not any(h.filters for h in own)
        finally:
            if handler == "none":
                ray_log.handlers = own
            else:
                own[0].setStream(before)
        said[verbose] = shown.getvalue() + capsys.readouterr().err
    warned = [line for line in said[False].splitlines() if "Last sync command failed" in line]
    assert len(warned) == 1 and "Traceback" not in said[False], said[False]
    assert "NotADirectoryError" in warned[0], warned  # the error itself is kept
    assert "Traceback (most recent call last)" in said[True]

"""Inspecting a real finished sweep: the analysis notebook executed headless, and `hpo dashboard` serving
its Optuna study over HTTP on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.image
import nbformat
import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hpo.core.results import CONVERGED, FINISHED, STOPPED, load_sweep
from tests.conftest import REPO, run_cli

NOTEBOOK = REPO / "notebooks" / "sweep_analysis.ipynb"
PAIRED = REPO / "notebooks" / "sweep_analysis.py"
PNGS = ("learning_curves.png", "importance.png", "metric_vs_param.png", "class_balance.png", "confusion_matrix.png", "reliability.png")


@pytest.fixture(scope="module")
def promoted(tiny_promoted):
    return tiny_promoted["provenance"]


def execute_notebook(experiment: Path, figures: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel prefix:', sys.prefix)"))
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute(env={**env, "HPO_EXPERIMENT": str(experiment), "HPO_FIGURES": str(figures)})
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def text_of(nb: nbformat.NotebookNode) -> str:
    parts = []
    for o in outputs(nb):
        parts.append(o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def executed(tiny_sweep, promoted, tmp_path_factory):
    figures = tmp_path_factory.mktemp("figures")
    nb = execute_notebook(tiny_sweep["path"], figures, tiny_sweep["env"])
    return {"nb": nb, "figures": figures, "sweep": load_sweep(tiny_sweep["path"]), "provenance": promoted}


# ------------------------------------------------------------------------------------------ notebook
def test_stored_notebook_has_no_outputs_and_matches_its_paired_py():
    import jupytext

    stored = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert stored.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    ipynb, py = jupytext.read(NOTEBOOK), jupytext.read(PAIRED)
    assert [(c.cell_type, c.source) for c in ipynb.cells] == [(c.cell_type, c.source) for c in py.cells]
    params = [c for c in ipynb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'EXPERIMENT = os.environ.get("HPO_EXPERIMENT", "../runs/quickstart")' in params[0].source
    assert ipynb.cells.index(params[0]) <= 1  # at the top: papermill injects its values right after it


def test_notebook_runs_in_the_venv_kernel_with_images_and_no_errors(executed):
    outs = outputs(executed["nb"])
    assert not [o for o in outs if o.output_type == "error"]
    assert not [o for o in outs if o.output_type == "stream" and "Traceback" in o.text]
    images = [o for o in outs if "image/png" in o.get("data", {})]
    assert len(images) == len(PNGS)
    assert f"kernel prefix: {sys.prefix}" in text_of(executed["nb"])


def test_notebook_saves_every_figure(executed):
    for name in PNGS:
        path = executed["figures"] / name
        assert path.is_file() and path.stat().st_size > 5_000, name
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] >= 200 and pixels.shape[1] >= 200 and pixels.std() > 0.01, name


def test_trials_table_is_every_trial_with_its_best_round_and_outcome(executed):
    sweep, spec = executed["sweep"], executed["sweep"].spec
    table = pd.read_csv(executed["figures"] / "trials_table.csv", dtype={"trial_id": str})
    assert set(table.trial_id) == {t.trial_id for t in sweep.trials} and len(table) == len(sweep.trials)
    assert list(table[f"best_{spec.metric}"]) == sorted(table[f"best_{spec.metric}"], reverse=True)
    for t in sweep.trials:
        row = table[table.trial_id == t.trial_id].iloc[0]
        value, rnd = t.best(spec.metric, spec.mode)
        assert row[f"best_{spec.metric}"] == pytest.approx(value) and row.best_round == rnd
        assert row.rounds == t.rounds_done and row.outcome == t.outcome
        assert row.learning_rate == pytest.approx(t.params["learning_rate"])
    assert {FINISHED, STOPPED} <= set(table.outcome)


def test_notebook_reports_rungs_best_config_and_test_confusion(executed):
    text = text_of(executed["nb"])
    trial, value, rnd = executed["sweep"].winner()
    assert "ASHA rungs at rounds 2, 4" in text  # grace_period 2, reduction_factor 2, max_rounds 6
    for t in executed["sweep"].trials:
        if t.outcome == STOPPED:
            assert f"{t.trial_id} at round {t.rounds_done}" in text
    assert f"best: trial {trial.trial_id}, val_accuracy={value:.4f} at round {rnd}" in text
    assert "importance" in text and "importance needs" not in text
    assert "baselines on the validation split (400 texts), val_accuracy: majority class (positive) 0.5050" in text  # the lines drawn
    test = executed["provenance"]["test_metrics"]
    assert f"expected calibration error {test['test_ece']:.4f} (15 bins), Brier score {test['test_brier']:.4f}" in text
    (tn, fp), (fn, tp) = executed["provenance"]["test_metrics"]["test_confusion"]
    matrix = next(o.data["text/plain"] for o in outputs(executed["nb"]) if "predicted negative" in o.get("data", {}).get("text/plain", ""))
    assert matrix.split() == ["predicted", "negative", "predicted", "positive", "true", "negative", str(tn), str(fp), "true", "positive", str(fn), str(tp)]


def _copy_with_one_complete_trial(sweep: Path, target: Path) -> None:
    """The sweep as if ASHA had stopped all but one trial, and never promoted."""
    shutil.copytree(sweep, target, ignore=shutil.ignore_patterns("checkpoint_*", "wandb", "promotion", "figures"))
    journal = target / "hpo" / "optuna.journal"
    journal.unlink()
    old = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(sweep / "hpo" / "optuna.journal"))))
    new = optuna.create_study(study_name="tiny", direction="maximize", storage=JournalStorage(JournalFileBackend(str(journal))))
    complete = [t for t in old.trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 2
    for t in old.trials:
        keep = t.state != TrialState.COMPLETE or t.number == complete[0].number
        new.add_trial(optuna.trial.create_trial(
            state=t.state if keep else TrialState.PRUNED, value=t.value if keep and t.state == TrialState.COMPLETE else None,
            params=t.params, distributions=t.distributions, intermediate_values=t.intermediate_values,
        ))


def test_notebook_explains_what_a_small_unpromoted_sweep_cannot_show(tiny_sweep, tmp_path):
    sweep = tmp_path / "runs" / "tiny"
    _copy_with_one_complete_trial(tiny_sweep["path"], sweep)
    nb = execute_notebook(sweep, tmp_path / "figures", tiny_sweep["env"])
    text = text_of(nb)
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    assert "importance needs at least 3 trials that ran to the end; the study has 1 complete" in text
    assert "not promoted yet" in text and "no calibration to show" in text
    made = {p.name for p in (tmp_path / "figures").iterdir()}
    assert made == {"trials_table.csv", "learning_curves.png", "metric_vs_param.png", "class_balance.png"}


# ----------------------------------------------------------------------------------------- dashboard
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> tuple[int, str, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    with opener.open(url, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def serve_dashboard(path: str, journal_bytes, env: dict[str, str], cwd: Path, study: str) -> dict:
    """`hpo dashboard PATH` as a user starts it, on a free loopback port; what its HTTP API answers.
    ``journal_bytes()`` reads the stored journal, before and after (looking must not write to it)."""
    before = hashlib.sha256(journal_bytes()).hexdigest()
    port = _free_port()
    log = cwd / f"dashboard-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpo.cli", "dashboard", path, "--port", str(port)],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"hpo dashboard exited with {proc.returncode}:\n{log.read_text()}"
            try:
                _, _, body = _get(f"{base}/api/studies")
                break
            except OSError:
                assert time.monotonic() < deadline, f"no answer on {base} after 60 s:\n{log.read_text()}"
                time.sleep(0.5)
        studies = json.loads(body)["study_summaries"]
        details = {s["study_name"]: json.loads(_get(f"{base}/api/studies/{s['study_id']}")[2]) for s in studies}
        page = _get(f"{base}/dashboard")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    after = hashlib.sha256(journal_bytes()).hexdigest()
    return {"port": port, "studies": studies, "details": details, "page": page, "log": log.read_text(), "journal_unchanged": before == after, "study": study}


@pytest.fixture(scope="module")
def dashboard(tiny_sweep):
    journal = tiny_sweep["path"] / "hpo" / "optuna.journal"
    return serve_dashboard(str(tiny_sweep["path"]), journal.read_bytes, tiny_sweep["env"], tiny_sweep["tmp"], "tiny")


def _by_trial(dashboard, sweep) -> dict[str, dict]:
    """Each Tune trial's dashboard trial, matched by its configuration."""
    served = [t for t in dashboard["details"][dashboard["study"]]["trials"] if t["state"] != "Fail"]  # Fail: never ran
    key = lambda params: tuple(sorted((k, str(v)) for k, v in params.items()))  # noqa: E731
    by_params = {key({p["name"]: p["param_external_value"] for p in t["params"]}): t for t in served}
    return {t.trial_id: by_params[key({k: t.params[k] for k in sweep.spec.search_space})] for t in sweep.trials}


def test_dashboard_serves_every_trial_with_asha_stops_as_pruned(dashboard, tiny_sweep):
    folders = [p for p in tiny_sweep["path"].iterdir() if (p / "params.json").is_file()]
    assert len(folders) == len(load_sweep(tiny_sweep["path"]).trials)
    check_dashboard_serves_every_trial(dashboard, load_sweep(tiny_sweep["path"]))


def check_dashboard_serves_every_trial(dashboard: dict, sweep, resumed: bool = False) -> None:
    """Every trial of the sweep, and nothing else but (after a resume) trials handed out just before the driver
    stopped, which never ran: those are failed, with no rounds and a user attribute that says so."""
    from hpo.tune.searcher import NEVER_RAN

    name = dashboard["study"]
    assert [s["study_name"] for s in dashboard["studies"]] == [name]
    served = dashboard["details"][name]["trials"]
    in_study = len(served)  # the sweep's trials and those that never ran
    never_ran = [t for t in served if t["state"] == "Fail"]
    assert len(served) - len(never_ran) == len(sweep.trials)
    assert resumed or not never_ran
    for t in never_ran:
        assert not t["intermediate_values"] and NEVER_RAN in {a["key"] for a in t["user_attrs"]}, t
    served = _by_trial(dashboard, sweep)
    for t in sweep.trials:
        trial = served[t.trial_id]
        assert trial["state"] == {STOPPED: "Pruned", FINISHED: "Complete", CONVERGED: "Complete"}[t.outcome], (t.trial_id, t.outcome)
        # the learning curve, round by round, as Tune recorded it
        assert trial["intermediate_values"], t.trial_id
        rounds = {r["training_iteration"]: r[sweep.spec.metric] for r in t.rounds}
        assert all(v["value"] == pytest.approx(rounds[v["step"]]) for v in trial["intermediate_values"]), t.trial_id
    assert dashboard["details"][name]["has_intermediate_values"]
    status, content_type, html = dashboard["page"]
    assert status == 200 and content_type.startswith("text/html") and b"<script" in html
    assert f"http://127.0.0.1:{dashboard['port']}/dashboard" in dashboard["log"]
    assert f"{in_study} trials" in dashboard["log"]  # the study's count, never-ran trials included
    assert dashboard["journal_unchanged"]  # looking does not write to the sweep


def test_dashboard_learning_curves_hold_every_round_and_complete_values_follow_the_winner_rule(dashboard, tiny_sweep):
    """Tune hands a trial's last round only to on_trial_complete; the study must still hold it."""
    sweep = load_sweep(tiny_sweep["path"])
    served = _by_trial(dashboard, sweep)
    for t in sweep.trials:
        trial = served[t.trial_id]
        assert [v["step"] for v in trial["intermediate_values"]] == [r["training_iteration"] for r in t.rounds], t.trial_id
        if t.outcome in (FINISHED, CONVERGED):
            assert trial["values"] == [pytest.approx(t.best(sweep.spec.metric, sweep.spec.mode)[0])], t.trial_id
    winner, value, _ = sweep.winner()
    if winner.outcome in (FINISHED, CONVERGED):  # the dashboard's best trial is the one promotion picks (or ties with it)
        assert dashboard["details"]["tiny"]["best_trials"][0]["values"] == [pytest.approx(value)]


def test_dashboard_refuses_a_folder_without_a_journal(tiny_sweep, tmp_path):
    env, cwd = tiny_sweep["env"], tiny_sweep["tmp"]
    empty = run_cli(["dashboard", str(tmp_path)], env, cwd, timeout=60)
    assert empty.returncode == 1 and "not a sweep folder" in empty.stdout and str(tmp_path) in empty.stdout
    no_journal = tmp_path / "old-sweep"
    (no_journal / "hpo").mkdir(parents=True)
    shutil.copy(tiny_sweep["path"] / "hpo" / "spec.yaml", no_journal / "hpo" / "spec.yaml")
    result = run_cli(["dashboard", str(no_journal)], env, cwd, timeout=60)
    assert result.returncode == 1, result.stdout
    assert f"{no_journal}: no Optuna journal at hpo/optuna.journal" in result.stdout and "written by `hpo sweep`" in result.stdout
    for r in (empty, result):
        assert "Traceback" not in r.stdout


def test_dashboard_on_a_port_in_use_is_a_clear_error(tiny_sweep):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(["dashboard", str(tiny_sweep["path"]), "--port", str(port)], tiny_sweep["env"], tiny_sweep["tmp"], timeout=60)
    assert result.returncode == 1 and f"cannot serve on 127.0.0.1:{port}" in result.stdout and "--port" in result.stdout
    assert "Traceback" not in result.stdout


def test_dashboard_without_optuna_dashboard_installed_names_the_extra(tiny_sweep, monkeypatch):
    from hpo.analysis.dashboard import serve
    from hpo.core.errors import HpoError

    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails as if not installed
    with pytest.raises(HpoError, match=r"optuna-dashboard is not installed.*\[analysis\]"):
        serve(str(tiny_sweep["path"]))


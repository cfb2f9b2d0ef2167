"""The private Ray Tune and Optuna names hpo relies on (``hpo/tune/_internals.py`` and the W&B callback), checked
against the installed versions: a Ray or Optuna upgrade that changes one fails here, naming it."""

from __future__ import annotations

import inspect
import json

import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from hpo.core import results
from hpo.tune import _internals
from tests.conftest import start_local_ray


def _search() -> OptunaSearch:
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    search = OptunaSearch(space=space, metric="val_accuracy", mode="max", sampler=optuna.samplers.RandomSampler(seed=0))
    return search


def test_optuna_search_keeps_its_study_trials_and_space_where_hpo_reads_them():
    search = _search()
    config = search.suggest("t1")
    ot = _internals.optuna_parts(search)
    assert isinstance(ot.study, optuna.Study)
    assert set(ot.trials) == {"t1"} and isinstance(ot.trials["t1"], optuna.trial.Trial)
    assert isinstance(ot.completed, set) and set(ot.space) == {"lr"} == set(config)
    search.on_trial_complete("t1", {"val_accuracy": 0.7, "training_iteration": 1})
    assert "t1" in _internals.optuna_parts(search).completed, "OptunaSearch no longer records completed trials there"
    assert ot.study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_a_study_trial_handle_from_its_number_reports_to_that_trial():
    study = optuna.create_study(direction="maximize")
    study.ask()
    second = study.ask()
    handle = _internals.study_trial(study, second.number)
    handle.report(0.5, step=3)
    assert study.trials[1].intermediate_values == {3: 0.5} and not study.trials[0].intermediate_values


def test_search_generator_and_limiter_count_trials_where_hpo_sets_them():
    limiter = ConcurrencyLimiter(_search(), max_concurrent=2)
    _internals.set_live_trials(limiter, {"a", "b"})
    assert limiter.live_trials == {"a", "b"} and limiter.num_unfinished_live_trials == 2
    assert limiter.suggest("c") is None, "the limiter no longer reads live_trials to hold back a third trial"
    generator = SearchGenerator(limiter)
    _internals.set_trials_created(generator, 4)
    generator._total_samples = 4  # what Tune sets from num_samples
    assert generator.is_finished(), "SearchGenerator no longer counts created trials in _counter"


def test_asha_keeps_its_time_attribute_and_stop_count():
    asha = AsyncHyperBandScheduler(time_attr="training_iteration", max_t=8, grace_period=2)
    assert _internals.asha_time_attr(asha) == "training_iteration"
    before = asha._num_stopped
    _internals.count_asha_stop(asha)
    assert asha._num_stopped == before + 1
    assert "_num_stopped" in inspect.getsource(AsyncHyperBandScheduler.on_trial_result), "ASHA's stop count moved"


def test_wandb_callback_internals_the_sweep_callback_extends():
    from ray.air.integrations import wandb as ray_wandb

    for name in ("_WandbLoggingActor", "_QueueItem", "_clean_log", "_force_on_current_node", "_run_wandb_process_run_info_hook"):
        assert hasattr(ray_wandb, name), f"ray.air.integrations.wandb.{name} is gone"
    assert _internals.ray_wandb().LoggingActor is ray_wandb._WandbLoggingActor
    cb = ray_wandb.WandbLoggerCallback(project="p", mode="offline")
    for attr in ("_trial_logging_actors", "_trial_logging_futures", "_logging_future_to_trial", "_remote_logger_class"):
        assert hasattr(cb, attr), f"WandbLoggerCallback.{attr} is gone"
    for method in ("_start_logging_actor", "_signal_logging_actor_stop", "_cleanup_logging_actor", "_cleanup_logging_actors"):
        assert callable(getattr(cb, method, None)), f"WandbLoggerCallback.{method} is gone"
    assert {"RESULT", "CHECKPOINT", "END"} <= {i.name for i in ray_wandb._QueueItem}
    for method in ("_handle_result", "_handle_checkpoint"):
        assert callable(getattr(ray_wandb._WandbLoggingActor, method, None)), f"_WandbLoggingActor.{method} is gone"


@pytest.fixture(scope="module")
def tune_experiment(tmp_path_factory):
    """A real two-trial Tune run on local Ray: its experiment state file as Tune writes it."""
    import ray
    from ray import tune

    def trainable(config):
        import tempfile

        for i in range(config["rounds"]):
            with tempfile.TemporaryDirectory() as folder:
                tune.report({"score": config["rounds"] * 0.1 + i}, checkpoint=tune.Checkpoint.from_directory(folder))

    root = tmp_path_factory.mktemp("tune")
    start_local_ray(1)
    try:
        tune.Tuner(
            trainable,
            param_space={"rounds": tune.grid_search([1, 3])},
            run_config=tune.RunConfig(name="shape", storage_path=str(root), verbose=0),
        ).fit()
    finally:
        ray.shutdown()
    return root / "shape"


def test_tunes_experiment_state_file_reads_as_hpo_expects(tune_experiment):
    files = sorted(tune_experiment.glob(f"{results.EXPERIMENT_STATE_PREFIX}*.json"))
    assert files, f"no {results.EXPERIMENT_STATE_PREFIX}*.json in {sorted(p.name for p in tune_experiment.iterdir())}"
    states = results.parse_experiment_state(files[-1].read_text())
    assert len(states) == 2
    by_rounds = {s["config"]["rounds"]: s for s in states.values()}
    assert {s["status"] for s in states.values()} == {"TERMINATED"}
    assert by_rounds[3]["last_result"]["training_iteration"] == 3
    assert by_rounds[3]["metric_analysis"]["score"]["max"] == pytest.approx(2.3)
    assert isinstance(by_rounds[1]["start_time"], (int, float, str)) and by_rounds[1]["last_result_time"] is not None
    assert json.loads(json.dumps(states))  # plain data
    # the checkpoint a restore would start from, read from Tune's pickled checkpoint manager
    assert _internals.checkpoint_round(by_rounds[3]["checkpoint_manager"]) == 3
    assert _internals.checkpoint_round(by_rounds[1]["checkpoint_manager"]) == 1
    assert _internals.checkpoint_round(None) is None and _internals.checkpoint_round({"_type": "CLOUDPICKLE_FALLBACK", "value": "00"}) is None


def test_unreadable_experiment_state_reads_as_nothing():
    assert results.parse_experiment_state("{torn") == {} and results.parse_experiment_state("") == {}


def test_an_offline_wandb_run_records_an_artifact_it_uses(tmp_path):
    """In a process of its own: W&B keeps process-wide state (its service, the current run) that other
    tests in this process touch."""
    import subprocess
    import sys
    import textwrap

    data = tmp_path / "data" / "train.parquet"
    data.parent.mkdir()
    data.write_bytes(b"rows")
    script = textwrap.dedent(
        f"""
        import wandb
        from hpo.tune import _internals
        run = wandb.init(project="shape", mode="offline", dir={str(tmp_path)!r}, settings=wandb.Settings(silent=True))
        assert run.offline is True
        artifact = wandb.Artifact("data-shape", type="dataset")
        artifact.add_reference("file://" + {str(data)!r}, checksum=False)
        _internals.record_artifact_use_offline(run, artifact)
        run.finish()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    from tests.wandb_records import read_run

    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    record = read_run(files[0])
    assert [a["name"] for a in record.used] == ["data-shape"], record.used


def test_tunes_loggers_restore_a_restarted_trials_file_through_the_method_hpo_overrides(tmp_path):
    """Tune's JSON logger downloads the stored ``result.json`` over the driver's when a trial starts again;
    hpo's keeps the driver's (never older), and downloads only when the driver has none."""
    import pyarrow.fs
    from ray.tune.logger import JsonLoggerCallback

    from hpo.tune.result_loggers import JsonResults

    class Trial:  # the parts of Tune's Trial its loggers use
        def __init__(self, name):
            self.config, self.checkpoint, self.local_path = {"lr": 0.1}, object(), str(tmp_path / "driver" / name)
            self.storage = type("S", (), {"trial_fs_path": str(tmp_path / "bucket"), "storage_filesystem": pyarrow.fs.LocalFileSystem()})()

        def init_local_path(self):
            import os

            os.makedirs(self.local_path, exist_ok=True)

    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket" / "result.json").write_text('{"training_iteration": 1}\n')  # uploaded a round ago
    rounds = '{"training_iteration": 1}\n{"training_iteration": 2}\n'
    for cls, name, kept in ((JsonLoggerCallback, "tune", False), (JsonResults, "hpo", True)):
        trial = Trial(name)
        trial.init_local_path()
        local = tmp_path / "driver" / name / "result.json"
        local.write_text(rounds)
        logger = cls()
        logger.log_trial_start(trial)
        logger.log_trial_end(trial)
        assert (local.read_text() == rounds) is kept, (name, local.read_text())
    fresh = Trial("resumed")  # a resumed driver: nothing staged yet, the stored copy is all there is
    fresh.init_local_path()
    JsonResults().log_trial_start(fresh)
    assert (tmp_path / "driver" / "resumed" / "result.json").read_text() == '{"training_iteration": 1}\n'


def test_wandb_lists_the_installed_packages_where_hpo_lists_them_once(monkeypatch):
    """Each W&B run looks ``wandb.util.working_set`` up when it starts (``Run._on_start``); hpo's loggers
    replace it with a kept list. Both halves are checked: the lookup, and the same packages either way."""
    import importlib.metadata

    import wandb.util
    from wandb.sdk.wandb_run import Run

    source = inspect.getsource(Run._on_start)
    assert "from wandb.util import working_set" in source and "publish_python_packages(working_set())" in source, "W&B no longer looks working_set up per run"
    monkeypatch.setattr(wandb.util, "working_set", wandb.util.working_set)  # put back after the test
    listed = sorted((p.key, p.version) for p in wandb.util.working_set())
    calls = []
    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda *a, **k: calls.append(1) or real(*a, **k))
    _internals.list_packages_once()
    _internals.list_packages_once()
    for _ in range(3):
        assert sorted((p.key, p.version) for p in wandb.util.working_set()) == listed
    assert len(calls) == 1


def test_tunes_syncer_builds_each_experiment_upload_where_hpo_orders_it(tmp_path):
    """Tune's syncer builds an upload with ``_FilesystemSyncer._sync_up_command`` (Ray's ``_upload_to_fs_path``
    and its keywords) and runs it in a thread; hpo builds its own there. Tune pickles the syncer, its last
    upload included, with each trial: pickled, hpo's upload is Tune's function again."""
    import pyarrow.fs
    from ray import cloudpickle
    from ray.train._internal.storage import _FilesystemSyncer, _upload_to_fs_path

    from hpo.tune.upload_order import StateLastUpload, state_uploaded_last

    stock = _FilesystemSyncer._sync_up_command
    (tmp_path / "stage" / "trial").mkdir(parents=True)
    (tmp_path / "stage" / "trial" / "result.json").write_text("{}\n")
    (tmp_path / "stage" / "experiment_state-x.json").write_text("{}")
    syncer = _FilesystemSyncer(storage_filesystem=pyarrow.fs.LocalFileSystem())
    built = []
    with _internals.experiment_uploads_built_by(lambda local, upload: built.append((local, upload))):
        assert syncer.sync_up(str(tmp_path / "stage"), str(tmp_path / "a"))
        syncer.wait()
    assert built == [(str(tmp_path / "stage"), _upload_to_fs_path)]
    assert (tmp_path / "a" / "trial" / "result.json").is_file() and _FilesystemSyncer._sync_up_command is stock
    with state_uploaded_last():
        syncer.sync_up(str(tmp_path / "stage"), str(tmp_path / "b"))
        assert isinstance(syncer._current_cmd[0], StateLastUpload)
        syncer.wait()
    assert (tmp_path / "b" / "experiment_state-x.json").read_text() == "{}"
    assert cloudpickle.loads(cloudpickle.dumps(syncer))._current_cmd[0] is _upload_to_fs_path


def test_rays_copies_into_storage_go_through_the_function_hpo_routes(tmp_path):
    """Ray's storage layer copies a trial's checkpoint and Tune's experiment folder with
    ``_pyarrow_fs_copy_files``, looked up at each call: copies into a filesystem other than the local one go
    to hpo's copy once routed, copies to this machine stay Ray's."""
    import pyarrow.fs
    from ray.train._internal import storage

    before = storage._pyarrow_fs_copy_files  # routed already when Ray was started in this process (hpo's init_ray)
    stock = getattr(before, "ray_stock", before)
    for caller in (storage.StorageContext.persist_current_checkpoint, storage._upload_to_fs_path):
        assert "_pyarrow_fs_copy_files(" in inspect.getsource(caller), f"{caller.__qualname__} no longer copies with _pyarrow_fs_copy_files"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("x")
    (tmp_path / "store").mkdir()
    elsewhere = pyarrow.fs.SubTreeFileSystem(str(tmp_path / "store"), pyarrow.fs.LocalFileSystem())  # not the local filesystem
    routed: list[dict] = []
    try:
        _internals.route_ray_uploads(lambda source, destination, **kw: routed.append({"source": source, "destination": destination, **kw}))
        _internals.route_ray_uploads(lambda source, destination, **kw: routed.append({"source": source, "destination": destination, **kw}))
        assert storage._pyarrow_fs_copy_files.ray_stock is stock  # routed twice: still one hop to Ray's own
        storage._upload_to_fs_path(str(tmp_path / "src"), fs=elsewhere, fs_path="up")
        assert [(r["source"], r["destination"], r["destination_filesystem"]) for r in routed] == [(str(tmp_path / "src"), "up", elsewhere)]
        storage._upload_to_fs_path(str(tmp_path / "src"), fs=pyarrow.fs.LocalFileSystem(), fs_path=str(tmp_path / "local"))
        assert (tmp_path / "local" / "a.txt").read_text() == "x" and len(routed) == 1
    finally:
        storage._pyarrow_fs_copy_files = before

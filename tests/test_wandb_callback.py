"""The W&B callback hands results to the trials' loggers without holding Tune's loop, and reuses a logger
whose run is written for the next trial instead of starting new processes for every trial."""

from __future__ import annotations

import json
import threading

import pytest
import ray

from tests.conftest import start_local_ray


@pytest.fixture()
def local_ray():
    start_local_ray(1)
    try:
        yield
    finally:
        ray.shutdown()  # stops the processes this init started


class Recorder:
    """A logger that records what it is told (the real one writes W&B runs)."""

    def __init__(self):
        self.told: list = []

    def start(self, logdir, exclude, to_config, story, *args, **kwargs):
        self.told.append(("start", kwargs["id"]))  # (args: where the trial is stored)

    def put(self, items):
        self.told.extend(items)

    def seen(self):
        return self.told


class Trial:
    """What the callback reads of a Tune trial to mark its run."""

    def __init__(self, trial_id: str, folder):
        import pyarrow.fs

        folder.mkdir()
        self.trial_id, self.local_path, self.path = trial_id, str(folder), str(folder)
        self.storage = type("Storage", (), {"storage_filesystem": pyarrow.fs.LocalFileSystem()})()


def test_a_result_is_never_waited_on_and_results_reach_the_logger_in_order(local_ray, tmp_path):
    from ray.air.integrations.wandb import _QueueItem

    from hpo.tune.wandb_callback import SweepWandbCallback

    cb = SweepWandbCallback(project="hpo-tests", upload_timeout=30)
    cb._remote_logger_class = ray.remote(num_cpus=0)(Recorder)
    stuck, live = Trial("stuck", tmp_path / "stuck"), Trial("live", tmp_path / "live")
    # A logger that can never start (it asks for a resource no node has): a blocking call would hang
    # Tune's loop here for good.
    cb._trial_logging_actors[stuck] = ray.remote(num_cpus=0, resources={"no-such-node": 1})(Recorder).remote()
    cb._start_logging_actor(live, [], id="live")
    items = [(_QueueItem.RESULT, {"round": i}) for i in (1, 2, 3)]

    def send_all():
        for trial in (stuck, live):
            for item in items:
                cb._send(trial, item)
            cb._signal_logging_actor_stop(trial)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    sender.join(timeout=60)
    assert not sender.is_alive(), "sending a result waited for a logger"
    logger = cb._trial_logging_actors[live]
    assert ray.get(logger.seen.remote()) == [("start", "live"), *items, (_QueueItem.END, None)]
    cb._cleanup_logging_actors(timeout=30)  # what Tune's loop does at every step
    assert cb._trial_logging_futures.keys() == {stuck}, "the stuck run was taken for written"
    assert cb._idle == [logger]


def test_a_logger_whose_run_is_written_takes_the_next_trial(local_ray, tmp_path):
    from ray.air.integrations.wandb import _QueueItem

    from hpo.tune.wandb_callback import SweepWandbCallback

    cb = SweepWandbCallback(project="hpo-tests", upload_timeout=30)
    cb._remote_logger_class = ray.remote(num_cpus=0)(Recorder)
    first, second, third = (Trial(name, tmp_path / name) for name in ("first", "second", "third"))
    cb._start_logging_actor(first, [], id="first")
    cb._start_logging_actor(second, [], id="second")  # the first's run is still open: a second logger
    assert cb._trial_logging_actors[first] != cb._trial_logging_actors[second]
    logger = cb._trial_logging_actors[first]
    cb._send(first, (_QueueItem.RESULT, {"round": 1}))
    cb._signal_logging_actor_stop(first)
    cb._cleanup_logging_actors(timeout=30)
    cb._start_logging_actor(third, [], id="third")
    assert cb._trial_logging_actors[third] == logger
    assert ray.get(logger.seen.remote()) == [("start", "first"), (_QueueItem.RESULT, {"round": 1}), (_QueueItem.END, None), ("start", "third")]


def test_a_logger_per_open_run_and_a_finishing_one_takes_the_next_run(local_ray, tmp_path):
    """A logger for each open run; a trial that finds none idle takes one whose run ended, to start once that
    run is written, instead of starting another process (each costs seconds of CPU, taken from the trials)."""
    from ray.air.integrations.wandb import _QueueItem

    from hpo.tune.wandb_callback import SweepWandbCallback

    cb = SweepWandbCallback(project="hpo-tests", upload_timeout=30)
    cb._remote_logger_class = ray.remote(num_cpus=0)(Recorder)
    a, b, c, d = (Trial(name, tmp_path / name) for name in "abcd")
    cb._start_logging_actor(a, [], id="a")
    cb._start_logging_actor(b, [], id="b")
    assert cb._trial_logging_actors[a] != cb._trial_logging_actors[b]
    cb._signal_logging_actor_stop(a)
    cb._start_logging_actor(c, [], id="c")  # a's run may still be being written: c's goes after it
    shared, b_logger = cb._trial_logging_actors[a], cb._trial_logging_actors[b]
    assert cb._trial_logging_actors[c] == shared
    cb._cleanup_logging_actors(timeout=30)
    assert cb._idle == [] and set(cb._trial_logging_actors) == {b, c}  # a's logger is c's now
    cb._signal_logging_actor_stop(b)
    cb._cleanup_logging_actors(timeout=30)
    assert cb._idle == [b_logger]
    cb._start_logging_actor(d, [], id="d")
    assert cb._trial_logging_actors[d] == b_logger and cb._idle == []
    assert ray.get(shared.seen.remote()) == [("start", "a"), (_QueueItem.END, None), ("start", "c")]


def test_the_logger_writes_a_run_beside_the_trial_where_tune_stores_it_and_marks_it(local_ray, tmp_path):
    """In its own process (a Ray actor), as in a sweep: W&B keeps process-wide state."""
    import pyarrow.fs
    from ray.air.integrations.wandb import _QueueItem

    from hpo.tune.wandb_callback import LOGGED_MARKER, _FlushingLoggingActor
    from tests.wandb_records import read_run

    staging, stored = tmp_path / "staging", tmp_path / "stored"
    staging.mkdir()
    stored.mkdir()
    logger = ray.remote(num_cpus=0)(_FlushingLoggingActor).remote()
    for trial_id, staged in (("t1", staging), ("t2", stored)):  # a second run in the same logger, staged in storage
        logger.start.remote(str(staged), [], [], None, (pyarrow.fs.LocalFileSystem(), str(stored)), id=trial_id, project="p", mode="offline")
        logger.put.remote([(_QueueItem.RESULT, {"training_iteration": r, "val_accuracy": 0.5 + r / 10}) for r in (1, 2)])
        assert ray.get(logger.put.remote([(_QueueItem.END, None)])) is None
        assert json.loads((stored / LOGGED_MARKER).read_text()) == {"run_id": trial_id}
        (run_file,) = stored.glob(f"wandb/offline-run-*/run-{trial_id}.wandb")
        assert [row["val_accuracy"] for row in read_run(run_file).history] == [0.6, 0.7]

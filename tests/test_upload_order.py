"""Tune's upload of the experiment folder (``hpo.tune.upload_order``): at every moment of an upload, the stored
experiment state is no newer than the stored trial folders, so a driver killed mid-upload loses no round.
Tune's own syncer runs each upload here, into a real folder, through a filesystem that records the order of
the writes (and, for one test, saves Tune's state again mid-upload, as Tune's loop does when an upload to a
slow store outlasts its save period)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs
import pytest
from ray.train import SyncConfig
from ray.train._internal.storage import StorageContext

from hpo.tune.upload_order import state_uploaded_last, store_with_state

STATE = "experiment_state-2026-01-01_00-00-00.json"


class _Recording(pyarrow.fs.FileSystemHandler):
    """The local filesystem, noting each file written; ``on_write(path)`` runs before each write."""

    def __init__(self, on_write=lambda path: None):
        self.fs, self.written, self.on_write = pyarrow.fs.LocalFileSystem(), [], on_write

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def get_type_name(self):
        return "recording"

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("not here")

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)
        self.written.append(dest)  # a file written beside and renamed into place counts where it lands

    def copy_file(self, src, dest):
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        self.on_write(path)
        self.written.append(path)
        return self.fs.open_output_stream(path)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path)


def _staged(root: Path) -> Path:
    """A driver's staging copy of an experiment: Tune's state files and two trial folders."""
    stage = root / "stage"
    for trial in ("exp_a1", "exp_b2"):
        (stage / trial / "wandb" / "offline-run-1").mkdir(parents=True)
        (stage / trial / "result.json").write_text('{"training_iteration": 1}\n{"training_iteration": 2}\n')
        (stage / trial / "wandb" / "offline-run-1" / "run-x.wandb").write_bytes(b"records")
    (stage / STATE).write_text(json.dumps({"trial_data": ["a1 at round 2", "b2 at round 2"]}))
    (stage / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(b"searcher")
    (stage / "tuner.pkl").write_bytes(b"tuner")
    return stage


def _upload(stage: Path, dest: Path, handler: _Recording) -> None:
    """One upload by Tune's own syncer, as Tune's loop starts it after saving its state."""
    storage = StorageContext(str(dest), "exp", sync_config=SyncConfig(), storage_filesystem=pyarrow.fs.PyFileSystem(handler))
    handler.written.clear()  # Tune's check that the storage can be written to
    with state_uploaded_last():
        storage.syncer.sync_up(str(stage), storage.experiment_fs_path)
        storage.syncer.wait()


def test_trial_folders_are_stored_before_the_state_that_names_them(tmp_path):
    stage, handler = _staged(tmp_path), _Recording()
    _upload(stage, tmp_path / "bucket", handler)
    names = [Path(p).relative_to(tmp_path / "bucket" / "exp").as_posix() for p in handler.written]
    trial_files = [n for n in names if "/" in n]
    assert sorted(trial_files) == ["exp_a1/result.json", "exp_a1/wandb/offline-run-1/run-x.wandb", "exp_b2/result.json", "exp_b2/wandb/offline-run-1/run-x.wandb"]
    assert names[: len(trial_files)] == trial_files, f"a state file went before a trial's files: {names}"
    assert names[-1] == STATE, "the experiment state (the trial list Tune restores) goes last"
    assert (tmp_path / "bucket" / "exp" / STATE).read_bytes() == (stage / STATE).read_bytes()


def test_a_driver_killed_while_the_state_is_written_leaves_the_stored_state_whole(tmp_path):
    """Each state file lands whole or not at all: killed in the middle of writing the experiment state (here: the
    write fails half-way), the stored one is the last whole state, the one a resume can read."""
    stage, bucket = _staged(tmp_path), tmp_path / "bucket" / "exp"
    bucket.mkdir(parents=True)
    (bucket / STATE).write_text(json.dumps({"trial_data": ["a1 at round 1", "b2 at round 1"]}))
    before = (bucket / STATE).read_bytes()

    def killed_in_the_write(path: str) -> None:
        if STATE in path:
            Path(path).write_bytes((stage / STATE).read_bytes()[:7])  # the write had begun
            raise OSError("the driver died here")

    with pytest.raises(Exception):
        _upload(stage, tmp_path / "bucket", _Recording(killed_in_the_write))
    assert (bucket / STATE).read_bytes() == before
    assert not [p.name for p in bucket.glob("experiment_state-*.json") if p.name != STATE], "no other state file that Tune would read"
    _upload(stage, tmp_path / "bucket", _Recording())  # the next upload stores the new state whole
    assert (bucket / STATE).read_bytes() == (stage / STATE).read_bytes()


def test_a_state_saved_during_an_upload_waits_for_the_next_one(tmp_path):
    """Tune saves its state again while a slow upload is still going on (after one more round of a1, say):
    that upload stores the state it started with, which its trial files already cover."""
    stage = _staged(tmp_path)
    before = (stage / STATE).read_text()

    def next_round(path: str) -> None:
        if path.endswith("exp_b2/result.json"):  # the upload is half-way; Tune's loop goes on
            (stage / "exp_a1" / "result.json").write_text("".join(f'{{"training_iteration": {i}}}\n' for i in (1, 2, 3)))
            (stage / STATE).write_text(json.dumps({"trial_data": ["a1 at round 3", "b2 at round 2"]}))

    _upload(stage, tmp_path / "bucket", _Recording(next_round))
    assert (tmp_path / "bucket" / "exp" / STATE).read_text() == before
    stored = (tmp_path / "bucket" / "exp" / "exp_a1" / "result.json").read_text().splitlines()
    assert len(stored) >= 2, "the stored results hold at least the rounds the stored state knows of"


def test_a_trial_folder_that_fails_to_upload_keeps_the_stored_state_as_it_was(tmp_path):
    stage, bucket = _staged(tmp_path), tmp_path / "bucket" / "exp"
    bucket.mkdir(parents=True)
    (bucket / STATE).write_text("the state of the last complete upload")
    (bucket / "exp_b2").write_text("a file where b2's folder goes: its upload fails")
    with pytest.raises(Exception):
        _upload(stage, tmp_path / "bucket", _Recording())
    assert (bucket / STATE).read_text() == "the state of the last complete upload"


def test_the_study_is_stored_with_the_state_before_it_and_a_study_not_stored_keeps_the_stored_state(tmp_path):
    """The sweep's Optuna journal goes with each upload, after the trial folders and before Tune's state files
    (the stored study is never older than the stored searcher state), and again only once it changed. A store
    that does not take it fails that upload, as Tune's syncer reports, instead of the sweep (it did when the
    searcher uploaded it while Tune saved its state)."""
    stage, bucket = _staged(tmp_path), tmp_path / "bucket" / "exp"
    journal = tmp_path / "driver" / "optuna.journal"
    journal.parent.mkdir()
    journal.write_bytes(b"study with 2 trials")
    store_with_state(str(bucket), "hpo/optuna.journal", journal)
    handler = _Recording()
    _upload(stage, tmp_path / "bucket", handler)
    names = [Path(p).relative_to(bucket).as_posix() for p in handler.written]
    at = names.index("hpo/optuna.journal")
    assert all("/" in n for n in names[:at]) and all("/" not in n for n in names[at + 1 :]), names
    assert (bucket / "hpo" / "optuna.journal").read_bytes() == b"study with 2 trials"
    _upload(stage, tmp_path / "bucket", handler)
    assert "hpo/optuna.journal" not in [Path(p).relative_to(bucket).as_posix() for p in handler.written]
    journal.write_bytes(b"study with 3 trials")
    (stage / STATE).write_text(json.dumps({"trial_data": ["a1 at round 3", "b2 at round 2", "c3 at round 1"]}))

    def store_down(path: str) -> None:
        if path.endswith("optuna.journal"):
            raise OSError("the store does not answer")

    with pytest.raises(OSError, match="does not answer"):
        _upload(stage, tmp_path / "bucket", _Recording(store_down))
    assert (bucket / STATE).read_text() == json.dumps({"trial_data": ["a1 at round 2", "b2 at round 2"]})
    _upload(stage, tmp_path / "bucket", _Recording())
    assert (bucket / "hpo" / "optuna.journal").read_bytes() == b"study with 3 trials" and "c3" in (bucket / STATE).read_text()


def test_saving_the_searcher_with_the_storage_down_goes_on(tmp_path, monkeypatch):
    """Tune saves the searcher in its loop, where an error ends the sweep: saving it writes the study on the
    driver's disk only (it uploaded the journal, and a storage that did not answer ended the sweep); the study
    goes with the next upload of the experiment folder."""
    from hpo.core.spec import parse_spec
    from hpo.core.storage import Location
    from hpo.tune import upload_order
    from hpo.tune.searcher import make_searcher
    from tests.conftest import free_port, tiny_spec

    monkeypatch.setenv("HPO_CACHE", str(tmp_path / "cache"))
    down = Location.parse(f"s3://sweeps/down?endpoint_override=127.0.0.1:{free_port()}&scheme=http&region=us-east-1")
    search = make_searcher(parse_spec(tiny_spec(tmp_path / "runs"), "tiny.yaml"), down).searcher.searcher
    assert search.suggest("t1")
    search.save(str(tmp_path / "searcher-state.pkl"))
    assert (tmp_path / "searcher-state.pkl").is_file()
    journal = upload_order._WITH_STATE[down.path]["hpo/optuna.journal"]
    assert journal.is_file() and journal.stat().st_size > 0

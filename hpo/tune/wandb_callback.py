"""Ray Tune's W&B callback with the fixes a sweep that can crash needs, kept in a module of its own so it
is imported only when tracking is on (and so Tune can pickle it by reference into the experiment state).

W&B writes a run out when the run finishes, so a driver killed moments after a trial ended can leave
that trial's run empty. Each trial whose run was written completely gets a marker file in its folder;
a resumed sweep replays, from the trial's ``result.json``, every round of a trial that has no marker.
W&B runs are keyed by trial id with ``resume="allow"``, so a replay continues the trial's own run
(steps W&B already holds are ignored by it) instead of adding a second one.

Ray's callback starts two actors for each trial, a queue and a logger: two new Python processes that
import Ray and W&B, about 4 CPU-seconds a trial on a 2-core machine (measured), taken from the running
trials, more than a small trial costs itself; and it puts every result into the queue with a blocking
call, which held Tune's whole loop until that trial's queue was up (0.7-3 s per trial). Here the loggers
are kept and reused: a logger writes one trial's run at a time and then takes the next trial's, so a
sweep starts about one logger per concurrent trial, whatever its number of trials. Results are handed to
the logger with calls that are only submitted, never waited on; Ray runs one caller's calls to an actor
in order.

Each trial's run also tells its story (``hpo.sweep.tracking.TrialStory``): rounds as the x-axis, the best value
and its round in the summary, the outcome as a tag when the trial ends, the dataset artifact as input.
W&B's private names this needs (Ray's logging actor, an offline artifact use) are kept in this module.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.fs
from ray.air.constants import TRAINING_ITERATION

from hpo.core.storage import copy_files
from hpo.tune._internals import list_packages_once, ray_wandb, record_artifact_use_offline
from hpo.tune.trial_files import FS_ERRORS, in_storage, reported_rounds
from hpo.core.stopping import STOPPING

_ray = ray_wandb()
WandbLoggerCallback, _WandbLoggingActor, _QueueItem = _ray.WandbLoggerCallback, _ray.LoggingActor, _ray.QueueItem
_clean_log, _force_on_current_node, _run_wandb_process_run_info_hook = _ray.clean_log, _ray.force_on_current_node, _ray.run_info_hook

log = logging.getLogger("hpo")

WINNER_TAG = "winner"  # on the W&B run of the trial promotion picked
LOGGED_MARKER = "wandb-logged.json"  # in a trial's folder once its W&B run is completely written
# While a sweep is being stopped (Ctrl-C, SIGTERM) the end of the run waits this long, not minutes, for the
# W&B loggers; runs not written out by then are replayed by the next resume.
STOPPING_WAIT_S = 5


# ----------------------------------------------------------------------------- one trial's run
def use_artifact(run: Any, artifact: Any) -> None:
    """Record ``artifact`` as an input of ``run``, offline too. W&B's ``use_artifact`` refuses offline
    runs (it asks the server at once); what it records for a new artifact (logged, then used once it
    is committed) is written to the run file here, and ``wandb sync`` performs it."""
    if not run.offline:
        run.use_artifact(artifact)
    else:
        record_artifact_use_offline(run, artifact)


def begin_trial_run(run: Any, wandb: Any, story: Any) -> None:
    """Every ``val_*`` metric is plotted against the round (ASHA's unit; ``epoch`` is there too), the
    sweep's metric keeps its best (max or min by the sweep's mode) and last value in the summary, the
    rungs are in the config, and the run uses the sweep's dataset artifact."""
    run.define_metric("round")
    run.define_metric("epoch")
    run.define_metric("val_*", step_metric="round")
    run.define_metric(story.metric, step_metric="round", summary=f"{story.mode},last")
    run.config.update({"rungs": story.rungs}, allow_val_change=True)
    if story.dataset is not None:
        use_artifact(run, story.dataset.artifact(wandb))


def outcome_tag(outcome: str) -> str:
    """The W&B tag of a trial's outcome as ``hpo status`` words it; a failure's reason goes to the notes."""
    return outcome.split(":", 1)[0]


def end_trial_run(run: Any, outcome: str, winner: bool = False) -> None:
    """The outcome (as ``hpo status`` words it) as a tag, ``winner`` once promotion picked the trial."""
    run.tags = (outcome_tag(outcome), *([WINNER_TAG] if winner else []))
    if outcome_tag(outcome) != outcome:
        run.notes = outcome


def _log_items(actor: Any, run: Any, items: Iterable[tuple]) -> bool:
    """Ray's logging loop (results, checkpoints, the end), plus the trial's story: the round of the best
    value after each result (the rule ``hpo status`` uses), the outcome tags at the end. True at the end."""
    from hpo.core.results import best_of

    story, rows = actor._story, actor.__dict__.setdefault("_rows", [])
    for kind, content in items:
        if kind == _QueueItem.END:
            if story is not None and content:
                end_trial_run(run, **content)
            return True
        if kind == _QueueItem.CHECKPOINT:
            actor._handle_checkpoint(content)
            continue
        log_row, config_update = actor._handle_result(content)
        try:
            run.config.update(config_update, allow_val_change=True)
            run.log(log_row, step=log_row.get(TRAINING_ITERATION))
        except (urllib.error.HTTPError, FileNotFoundError) as e:  # as Ray's loop: a few lost points are no failure
            log.warning("Failed to log result to W&B: %s", e)
        if story is not None:
            rows.append(content)
            best = best_of(rows, story.metric, story.mode)
            if best is not None:
                run.summary["best_round"] = best[1]
    return False


class _FlushingLoggingActor(_WandbLoggingActor):
    """Ray's logging actor, writing one trial's run at a time and then the next trial's (see the module
    docstring): ``start`` opens a trial's run, ``put`` logs its results and, with the trial's end, finishes it.
    The trial's story is told as it goes (see ``_log_items``).

    The stock actor returns right after ``wandb.finish()``, and Tune then kills it; W&B's writer process
    dies with it, which cut the last records of the runs that ended last (seen offline: a run file left
    with its header only; ``finish()`` returns before the writer has flushed). ``wandb.teardown()`` waits
    for the writer, so a run is completely written once ``put`` returns from its end."""

    def __init__(self):  # a logger for any trial (Ray's takes one trial's settings here)
        import wandb

        list_packages_once()  # each run's requirements.txt, listed once per logger, not once per run
        self._wandb = wandb
        self._run: Any = None
        self._error: Exception | None = None

    def start(self, logdir: str, exclude: list, to_config: list, story: Any, stored_at: tuple | None, *args: Any, **kwargs: Any) -> None:
        """Open a trial's run in ``logdir`` (the driver's staging copy of the trial); ``stored_at`` is where
        Tune stores the trial, (filesystem, folder), where the written run is copied and marked."""
        os.environ["WANDB_START_METHOD"] = "thread"
        os.chdir(logdir)  # W&B writes the run under ./wandb: the trial's folder
        self._logdir, self._exclude, self._to_config, self._story = logdir, set(exclude), set(to_config), story
        self._stored_at = stored_at
        self.args, self.kwargs, self._trial_name = args, kwargs, kwargs.get("name", "unknown")
        self._rows, self._error = [], None
        try:
            run = self._wandb.init(*args, **kwargs)
            run.config.trial_log_path = logdir
            _run_wandb_process_run_info_hook(run)
            if story is not None:
                begin_trial_run(run, self._wandb, story)
            self._run = run
        except Exception as e:  # told with the trial's end: the callback warns, a resume writes the run again
            self._error = e
            self._wandb.teardown()

    def put(self, items: list[tuple]) -> str | None:
        """Log ``items`` in order; after the trial's end, finish the run, copy it beside the trial in storage
        and mark it there (see ``store_run``: its warning, if any, is returned for the driver to show).
        Raises, at the end only, what kept the run from being completely written (so that it is not
        marked, and a resume replays it)."""
        ended = any(kind == _QueueItem.END for kind, _ in items)
        if self._run is not None:
            try:
                ended = _log_items(self, self._run, items)
                if ended:
                    self._run.finish()
            except Exception as e:
                self._error = self._error or e
                ended = ended or any(kind == _QueueItem.END for kind, _ in items)
            if ended:
                self._run = None
                self._wandb.teardown()
        if ended and self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"the W&B run of {self._trial_name} was not completely written: {type(error).__name__}: {error}")
        if ended and self.__dict__.get("_stored_at") is not None:
            fs, folder = self._stored_at
            return store_run(fs, folder, self._logdir, self.kwargs.get("id", self._trial_name))
        return None


def replay_trial_run(wandb: Any, story: Any, init_kwargs: dict[str, Any], rows: list[dict], outcome: str, winner: bool) -> str | None:
    """Write a trial's whole run again in this process (its config, every round, its tags), under its id:
    offline, a later file of a run is not merged with the earlier ones on ``wandb sync`` but replaces
    them, so a tag added later (``winner``) comes with a complete copy. Returns the run's folder."""
    actor = _FlushingLoggingActor.__new__(_FlushingLoggingActor)  # its logging code, not a Ray actor
    actor._exclude = set(WandbLoggerCallback._exclude_results) | {"config"}
    actor._to_config = set(WandbLoggerCallback.AUTO_CONFIG_KEYS)
    actor._story = story
    run = wandb.init(**init_kwargs)
    begin_trial_run(run, wandb, story)
    items = [(_QueueItem.RESULT, _clean_log(row)) for row in rows]
    _log_items(actor, run, [*items, (_QueueItem.END, {"outcome": outcome, "winner": winner})])
    run_dir = getattr(run, "dir", None)
    run.finish()
    return run_dir


def trial_outcome(trial, failed: bool) -> str:
    """How a trial that just ended ended, by the rule ``hpo status`` applies to its folder."""
    from hpo.core.results import TrialRecord

    rows = reported_rounds(trial)
    last = getattr(trial, "last_result", None) or {}
    if isinstance(last.get(TRAINING_ITERATION), int) and (not rows or last[TRAINING_ITERATION] > rows[-1][TRAINING_ITERATION]):
        rows.append(last)  # its last result, should the result file not have it yet
    return TrialRecord(trial.trial_id, str(trial), None, {}, "ERROR" if failed else "TERMINATED", rows).outcome


def _marker_exists(trial) -> bool:
    try:
        fs, path = in_storage(trial, LOGGED_MARKER)
        return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound
    except FS_ERRORS:
        return False


def _remove_marker(trial) -> None:
    """Remove the marker of a trial whose run is written again (a restarted trial, a replay)."""
    try:
        if _marker_exists(trial):
            fs, path = in_storage(trial, LOGGED_MARKER)
            fs.delete_file(path)
    except FS_ERRORS as e:
        log.warning("could not update %s for trial %s: %s", LOGGED_MARKER, trial.trial_id, e)


def store_run(fs: Any, folder: str, local: str, run_id: str) -> str | None:
    """After a trial's run is completely written (in the logger, off Tune's loop): copy its W&B folder from
    the driver's staging copy of the trial, ``local``, to where Tune stores the trial, ``folder`` on ``fs``,
    then write the marker beside it. Tune's own last upload happens before the loggers of the last trials
    have finished writing, which left their W&B files empty in the sweep folder.
    Returns what went wrong (the run is then not marked, and a resume writes it again), or None."""
    src = Path(local or "", "wandb")
    try:
        same = isinstance(fs, pyarrow.fs.LocalFileSystem) and Path(folder, "wandb").resolve() == src.resolve()
        if src.is_dir() and not same:
            copy_files(str(src.resolve()), f"{folder}/wandb", source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)
    except FS_ERRORS as e:
        return f"could not copy the W&B files of trial {run_id} to {folder}: {e}"
    try:
        with fs.open_output_stream(f"{folder}/{LOGGED_MARKER}") as f:
            f.write((json.dumps({"run_id": run_id}) + "\n").encode())
    except FS_ERRORS as e:
        return f"could not update {LOGGED_MARKER} for trial {run_id}: {e}"
    return None


class SweepWandbCallback(WandbLoggerCallback):
    """Reuses its loggers from trial to trial, has each completely written run marked, replays the rounds a
    crash kept out of W&B, and has a finalizer that tolerates interpreter shutdown."""

    _logger_actor_cls = _FlushingLoggingActor

    def __init__(self, *args: Any, story: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._story = story  # hpo.sweep.tracking.TrialStory

    @property
    def _ends(self) -> dict:
        """Per trial that just ended, what its logger is told with the end (its outcome)."""
        return self.__dict__.setdefault("_trial_ends", {})

    @property
    def _replayed_upto(self) -> dict:
        """Per trial, the last round the replay sent. Made on first use: a callback restored from an
        experiment started by an older version never ran this class's ``__init__``."""
        return self.__dict__.setdefault("_replayed", {})

    @property
    def _stopping(self) -> set:
        """Trials whose logger was told to finish (it may still be writing)."""
        return self.__dict__.setdefault("_stopping_trials", set())

    @property
    def _idle(self) -> list:
        """Loggers whose last run is completely written, waiting for the next trial's."""
        return self.__dict__.setdefault("_idle_loggers", [])

    def _send(self, trial, *items) -> None:
        """Hand items to the trial's logger without waiting; the run's end gives the future its completion."""
        future = self._trial_logging_actors[trial].put.remote(list(items))
        if any(kind == _QueueItem.END for kind, _ in items):
            self._trial_logging_futures[trial] = future
            self._logging_future_to_trial[future] = trial

    def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
        if trial in self._trial_logging_actors:
            return
        if not self._remote_logger_class:
            # Ray's callback hands WANDB_API_KEY to its logging actors in their runtime_env, which Ray writes
            # in plain text to its logs. The actors run on this node, whose Ray workers inherit the
            # environment Ray was started with (this process's, for the embedded Ray; the node's on a
            # cluster) or use W&B's own login there, so nothing is passed.
            # Not restarted when they die (Ray's are, and its core worker then logs an error for every
            # trial about their constructor arguments): a lost run is replayed by the next resume.
            import ray

            self._remote_logger_class = ray.remote(num_cpus=0, **_force_on_current_node(), max_restarts=0)(self._logger_actor_cls)
        actor = self._idle.pop() if self._idle else self._finishing_logger()
        if actor is None:
            actor = self._remote_logger_class.remote()
        self._trial_logging_actors[trial] = actor
        # (a callback restored from an experiment started by an older version has no story)
        stored_at = (trial.storage.storage_filesystem, trial.path.rstrip("/"))
        actor.start.remote(trial.local_path, exclude_results, self.AUTO_CONFIG_KEYS, self.__dict__.get("_story"), stored_at, **wandb_init_kwargs)

    def _finishing_logger(self) -> Any:
        """For a new trial's run when no logger is idle: a logger finishing a run that ended, which takes the
        new run once that one is written, when there is already a logger for every open run, the new one
        included (None: start another). Starting a logger costs a process and seconds of CPU, and on a busy
        machine, where runs are written slowly, starting one for every trial that found none idle only made
        the machine busier. Offline, a run is written in a fraction of a second."""
        busy = list(dict.fromkeys(self._trial_logging_actors.values()))
        open_runs = sum(1 for t in self._trial_logging_actors if t not in self._stopping)
        if len(busy) < open_runs + 1:
            return None
        serving_open = [a for t, a in self._trial_logging_actors.items() if t not in self._stopping]
        for trial in self._trial_logging_futures:  # in the order the runs ended: the first is likely written first
            actor = self._trial_logging_actors.get(trial)
            if actor is not None and actor not in serving_open:
                return actor
        return None

    def on_step_end(self, iteration, trials, **info):
        if self._trial_logging_futures:
            self._cleanup_logging_actors()  # runs written since the last step: marked, their loggers reused

    def log_trial_start(self, trial):
        if trial in self._stopping and trial in self._trial_logging_futures:
            # A trial restarted (after a lost node, a retry) while its previous logger is still writing:
            # the stock callback would keep sending to that finishing logger and lose the rest of the run.
            # Let it finish, then continue the same W&B run in a new one.
            self._finish(self._trial_logging_futures[trial], timeout=self._upload_timeout)
        fresh = trial not in self._trial_logging_actors
        super().log_trial_start(trial)
        if fresh:
            _remove_marker(trial)
            self._replay(trial)

    def log_trial_result(self, iteration, trial, result):
        if trial not in self._trial_logging_actors or trial in self._stopping:
            self.log_trial_start(trial)
        if result.get(TRAINING_ITERATION, iteration) <= self._replayed_upto.get(trial, 0):
            return  # already sent by the replay
        self._send(trial, self._result_item(result))

    def _result_item(self, result: dict) -> tuple:
        return (_QueueItem.RESULT, _clean_log(result, video_kwargs=self.video_kwargs, image_kwargs=self.image_kwargs))

    def log_trial_save(self, trial):
        if self.upload_checkpoints and trial.checkpoint and isinstance(trial.checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
            self._send(trial, (_QueueItem.CHECKPOINT, trial.checkpoint.path))

    def _replay(self, trial) -> None:
        """Send the rounds the trial reported before this logger started (none for a new trial)."""
        rows = reported_rounds(trial)
        if rows:
            self._send(trial, *(self._result_item(row) for row in rows))
            self._replayed_upto[trial] = rows[-1][TRAINING_ITERATION]

    def log_trial_end(self, trial, failed: bool = False):
        self._ends[trial] = {"outcome": trial_outcome(trial, failed)}
        super().log_trial_end(trial, failed)

    def _signal_logging_actor_stop(self, trial):
        if trial in self._trial_logging_actors:
            self._send(trial, (_QueueItem.END, self._ends.pop(trial, None)))  # after the trial's results
            self._stopping.add(trial)

    def _cleanup_logging_actor(self, trial, reuse: bool = False):
        """Forget the trial's logger: back to the idle ones when its run ended cleanly, else ended."""
        import ray

        actor = self._trial_logging_actors.pop(trial, None)
        self._logging_future_to_trial.pop(self._trial_logging_futures.pop(trial, None), None)
        if actor is None or any(a == actor for a in self._trial_logging_actors.values()):
            return  # it already took another trial's run
        if reuse:
            self._idle.append(actor)
        else:
            ray.kill(actor)

    def _finish(self, future, timeout: float) -> bool:
        """Wait up to ``timeout`` s for one run's end; once it is written (and marked by its logger), the
        logger takes another trial's run."""
        import ray

        done, _ = ray.wait([future], timeout=timeout)
        if not done:
            return False
        trial = self._logging_future_to_trial[future]
        try:
            problem = ray.get(future)  # the logger has copied the run beside the trial and marked it
        except Exception as e:  # the run was not written out: the next resume replays it
            log.warning("W&B logging for trial %s failed: %s", trial.trial_id, e)
            written = False
        else:
            if problem:
                log.warning(problem)
            self._replayed_upto.pop(trial, None)
            written = True
        self._stopping.discard(trial)
        self._cleanup_logging_actor(trial, reuse=written)
        return True

    def _cleanup_logging_actors(self, timeout: int = 0, kill_on_timeout: bool = False):
        import ray

        futures = list(self._trial_logging_futures.values())
        if not futures:
            return
        done, remaining = ray.wait(futures, num_returns=len(futures), timeout=timeout)
        for future in done:
            self._finish(future, timeout=0)
        if kill_on_timeout:
            for future in remaining:
                trial = self._logging_future_to_trial[future]
                self._stopping.discard(trial)
                self._cleanup_logging_actor(trial)

    def _end_loggers(self) -> None:
        """Every logger ends: idle ones, and those of runs that were never told an end (the sweep was stopped)."""
        import ray

        for trial in list(self._trial_logging_actors):
            self._cleanup_logging_actor(trial)
        while self._idle:
            ray.kill(self._idle.pop())

    def on_experiment_end(self, trials, **info):
        for trial in trials:  # ended before a crash, its run never written out: write it now
            ended = trial.status in (trial.TERMINATED, trial.ERROR)
            if ended and trial not in self._trial_logging_actors and not _marker_exists(trial):
                if reported_rounds(trial):
                    self.log_trial_start(trial)
                    self.log_trial_end(trial, failed=trial.status == trial.ERROR)
        if STOPPING.is_set():
            self._upload_timeout = min(self._upload_timeout, STOPPING_WAIT_S)
        # Wait for the loggers to finish their runs (uploading them, online).
        self._cleanup_logging_actors(timeout=self._upload_timeout, kill_on_timeout=True)
        self._end_loggers()

    def __del__(self):
        try:
            import ray

            if ray.is_initialized():
                for trial in list(self._trial_logging_actors):
                    self._signal_logging_actor_stop(trial)
                self._cleanup_logging_actors(timeout=2, kill_on_timeout=True)
                self._end_loggers()
        except Exception:  # interpreter shutdown: nothing left to clean up
            pass

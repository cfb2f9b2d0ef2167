"""Keeps a sweep's disk use bounded: checkpoints that can no longer matter are deleted as trials end.

A checkpoint matters while its trial may still run (to resume it after a crash). Promotion retrains
from the base model, so a finished trial needs none, except that the best one keeps its checkpoint
for users who want to load it, as long as the spec's disk budget allows. A trial that errored keeps its
checkpoints: ``hpo resume`` continues it from the last one.

At the end of a run, only the trials the stored experiment state says ended are tidied. Tune also ends its
run that way after a failure in its loop (a storage that did not answer when it saved its state), having
marked the running trials as ended without storing that: the resume continues them from the stored state,
and they need their checkpoints (they were deleted, and the resumed trials failed until they were given up).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray.tune import Callback

from hpo.core.errors import HpoError
from hpo.core.results import tune_states
from hpo.core.stopping import STOPPING
from hpo.core.storage import Location
from trainables.report import BestSoFar

log = logging.getLogger("hpo")

# The sweep folder's size is measured again once this many times the last measurement's duration has passed.
_MEASURE_EVERY = 50


def _checkpoint_dirs(fs: Any, folder: str) -> list[str]:
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    except OSError:
        return []
    return [i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]


def folder_bytes(fs: Any, folder: str) -> int:
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    except OSError:
        return 0
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


class CheckpointJanitor(Callback):
    def __init__(self, metric: str, mode: str, budget_mb: float | None, at_end_only: bool = False):
        self.metric, self.mode = metric, mode
        # In object storage Tune uploads its experiment state in the background: until the sweep's final
        # state is stored, a trial that ended may still be "running" there, and a resume would need its
        # checkpoint. So deletions wait for the end (Tune stores its final state before calling it).
        self.at_end_only = at_end_only
        self.budget = None if budget_mb is None else int(budget_mb * 2**20)
        self._best = BestSoFar(metric, mode)
        self.deleted_bytes = 0

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._track(trial, result)

    def _track(self, trial: Any, result: dict) -> None:
        if not isinstance(self._best, BestSoFar):  # a plain dict in a janitor saved by an older hpo
            old, self._best = self._best, BestSoFar(self.metric, self.mode)
            self._best.values.update(old)
        self._best.note(trial.trial_id, result)

    # Tune calls these before it marks the trial TERMINATED / ERROR, so the trial is passed on as done.
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._track(trial, info.get("result") or trial.last_result or {})
        if not self.__dict__.get("at_end_only"):  # absent in a janitor restored from an older hpo
            self.tidy(trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if not self.__dict__.get("at_end_only"):
            self.tidy(trials)  # the others' (the errored trial keeps its checkpoints for a resume)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # A trial Tune stopped may have run one round ahead of the result that stopped it, and stored that
        # round's checkpoint after its folder was cleared: the last tidy lists every ended trial again.
        self.__dict__["_cleared"] = set()
        self.tidy(trials, stored_ended=_stored_as_ended(trials))

    def _delete(self, trial: Any) -> None:
        cleared = self.__dict__.setdefault("_cleared", set())  # absent in a janitor restored from an older hpo
        if trial.trial_id in cleared:  # an ended trial writes no checkpoint again: one listing per trial, not one per trial end
            return
        cleared.add(trial.trial_id)
        fs = trial.storage.storage_filesystem
        for path in _checkpoint_dirs(fs, trial.storage.trial_fs_path):
            size = folder_bytes(fs, path)
            try:
                fs.delete_dir(path)
                self.deleted_bytes += size
            except OSError as err:  # already gone, or storage hiccup: try again at the next trial end
                log.debug("could not delete %s: %s", path, err)
                cleared.discard(trial.trial_id)

    def _used(self, storage: Any, at_end: bool) -> int | None:
        """The sweep folder's size, or None when it was measured too recently to measure again.

        Measuring lists every file of the sweep (the trials' W&B runs too), so doing it at every trial end
        cost more the more trials had run: 0.02-0.04 s per trial end at 256 trials on 2 cores, in the
        driver's loop. It is measured again once 50 times as long as the last measurement took has passed
        (at most 2 % of the driver's time: in a small sweep still at every trial end, at 256 trials every
        second or two); always at the sweep's end."""
        now = time.monotonic()
        if not at_end and now < self.__dict__.get("_next_measure", 0.0):
            return None
        used = folder_bytes(storage.storage_filesystem, storage.experiment_fs_path)
        self.__dict__["_next_measure"] = now + _MEASURE_EVERY * (time.monotonic() - now)
        return used

    def _known_best(self, trial: Any) -> None:
        """A trial this callback saw no result of (it ended before a resume restored the sweep): its best
        value from Tune's own record of its results, so the best trial is still the one kept."""
        if self._best.get(trial.trial_id) is None:
            best = (getattr(trial, "metric_analysis", None) or {}).get(self.metric, {}).get(self.mode)
            if best is not None:
                self._track(trial, {self.metric: best})

    def tidy(self, trials: list, ending: Any = None, stored_ended: set[str] | None = None) -> None:
        """Delete the checkpoints of the trials that ended (but the best's); ``stored_ended``: only of these."""
        if STOPPING.is_set():  # Tune stops the running trials as if they ended; the resume needs their checkpoints
            return
        done = [t for t in trials if (t.status == "TERMINATED" or t is ending) and (stored_ended is None or t.trial_id in stored_ended)]
        for t in done:
            self._known_best(t)
        ranked = self._best.ranked(t.trial_id for t in done)
        keep = next((t for t in done if t.trial_id == ranked[0]), None) if ranked else None
        for t in done:
            if t is not keep:
                self._delete(t)
        if self.budget is None or not trials:
            return
        storage = trials[0].storage
        used = self._used(storage, at_end=ending is None)
        if used is None:
            return
        if used > self.budget and keep is not None:
            self._delete(keep)
            used = folder_bytes(storage.storage_filesystem, storage.experiment_fs_path)
        if used > self.budget:
            log.warning(
                "sweep uses %.0f MiB, over checkpoints.disk_budget_mb (%.0f): only running trials' checkpoints are left",
                used / 2**20, self.budget / 2**20,
            )


def _stored_as_ended(trials: list) -> set[str]:
    """The trials the experiment state in storage says ended (none when it cannot be read)."""
    if not trials:
        return set()
    storage = trials[0].storage
    try:
        states = tune_states(Location.on(storage.storage_filesystem, storage.experiment_fs_path))
    except (OSError, HpoError) as err:  # the storage does not answer: nothing is deleted, a resume may need it all
        log.warning("checkpoints kept: the stored experiment state could not be read (%s)", " ".join(str(err).split())[:200])
        return set()
    return {trial_id for trial_id, state in states.items() if state["status"] == "TERMINATED"}

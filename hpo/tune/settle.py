"""Before Tune restores a sweep, make the stored trial folders agree with Tune's stored state.

Tune saves its experiment state (the trial list, each trial's last result and checkpoint) every few
seconds and uploads it with the trial folders; ``hpo.tune.upload_order`` stores the trial folders of each
upload before the state, so a driver killed at any moment leaves trial folders that are as new as the
state Tune restores from, or newer:

- a trial started after the last save has a folder (rounds, a checkpoint, a W&B run; or only the checkpoint
  its process stored before the driver stored anything of it) but no entry in the state: Tune will never
  continue it, and the searcher's stored state does not know it either (both are saved at the same moment),
  so it is moved to ``hpo/orphans/`` (its checkpoints, useless now, are deleted) instead of being counted
  as an extra trial;
- an unfinished trial's ``result.json`` can hold rounds past the checkpoint the state names (the state
  itself can hold a result whose checkpoint it had not registered yet): Tune runs those rounds again from
  that checkpoint, so the stored copies are cut back to it, and every round of a trial is recorded once;
- an unfinished trial's W&B run, as stored before the crash, can hold those rounds too (and after a resume
  its rounds past the checkpoint need not come again the same way: ASHA may stop it earlier). The resumed
  sweep writes the run of every trial it continues again in full, from its stored results, under the same
  id; the copy from before the crash is moved to ``hpo/superseded/``, so that the trial's W&B run and its
  results hold the same rounds.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field

from hpo.tune._internals import checkpoint_round
from hpo.core.storage import META_DIR, Location

log = logging.getLogger("hpo")

ORPHANS_DIR = "orphans"  # under META_DIR
SUPERSEDED_DIR = "superseded"  # under META_DIR
WANDB_DIR = "wandb"  # in a trial's folder
_ENDED = ("TERMINATED",)


@dataclass
class Settled:
    orphans: list[str] = field(default_factory=list)  # trial folders moved aside
    cut: dict[str, int] = field(default_factory=dict)  # trial id -> rounds removed from its stored results
    superseded: list[str] = field(default_factory=list)  # trial folders whose W&B run was moved aside

    def describe(self) -> list[str]:
        lines = []
        if self.orphans:
            lines.append(
                f"{len(self.orphans)} trial(s) started just before the driver stopped were not in Tune's saved state and "
                f"cannot be continued; moved to {META_DIR}/{ORPHANS_DIR}/: {', '.join(self.orphans)}"
            )
        if self.cut:
            lines.append(
                "rounds reported after Tune's last saved state are run again from the trial's checkpoint: "
                + ", ".join(f"{tid} ({n})" for tid, n in sorted(self.cut.items()))
            )
        if self.superseded:
            lines.append(
                f"the W&B runs of the trials continued now are written again in full; the copies from before the stop "
                f"moved to {META_DIR}/{SUPERSEDED_DIR}/: {', '.join(self.superseded)}"
            )
        return lines


def _keep_rows(text: str, last_round: int) -> tuple[str, int]:
    """``result.json`` cut after round ``last_round``; also returns how many rows went."""
    kept, dropped = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a torn last line
            dropped += 1
            continue
        if int(row.get("training_iteration", 0)) <= last_round:
            kept.append(line)
        else:
            dropped += 1
    return "".join(f"{line}\n" for line in kept), dropped


def _keep_csv_rows(text: str, last_round: int) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or "training_iteration" not in rows[0]:
        return text
    col = rows[0].index("training_iteration")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(rows[0])
    for row in rows[1:]:
        try:
            if len(row) > col and int(float(row[col])) <= last_round:
                writer.writerow(row)
        except ValueError:
            continue
    return out.getvalue()


def _move(src: Location, dest: Location) -> None:
    """Copy ``src``'s files to ``dest``, checkpoints left out (of no use without Tune's state), then delete ``src``."""
    for f in src.list_files(recursive=True):
        rel = f.path[len(src.path) + 1 :]
        if rel.split("/", 1)[0].startswith("checkpoint_"):
            continue
        dest.child(*rel.split("/")).write_bytes(f.read_bytes())
    src.delete_dir()


def _is_trial_folder(sub: Location) -> bool:
    """A trial's folder, not something else a user put there: its config, or nothing but checkpoints."""
    if sub.child("params.json").exists():
        return True
    files = [f.path[len(sub.path) + 1 :] for f in sub.list_files(recursive=True)]
    return bool(files) and all(f.split("/", 1)[0].startswith("checkpoint_") and "/" in f for f in files)


def _cut_back(sub: Location, text: str, last_round: int) -> int:
    """Cut the trial's stored ``result.json`` and ``progress.csv`` after ``last_round``; returns the rows cut."""
    kept, dropped = _keep_rows(text, last_round)
    if dropped:
        sub.child("result.json").write_text(kept)
        progress = sub.child("progress.csv")
        try:
            progress.write_text(_keep_csv_rows(progress.read_text(), last_round))
        except FileNotFoundError:
            pass
    return dropped


def settle(experiment: Location) -> Settled:
    """Bring the trial folders at ``experiment`` in line with Tune's stored state (see the module)."""
    from hpo.core.results import parse_results, tune_states

    states = tune_states(experiment)
    done = Settled()
    if not states:
        return done
    for sub in experiment.list_dirs():
        if sub.name == META_DIR:
            continue
        try:
            text = sub.child("result.json").read_text()
        except FileNotFoundError:
            text = ""
        rows = parse_results(text)
        trial_id = rows[-1].get("trial_id") if rows else sub.name.rsplit("_", 1)[-1]
        state = states.get(trial_id)
        if state is None:
            if _is_trial_folder(sub):
                _move(sub, experiment.child(META_DIR, ORPHANS_DIR, sub.name))
                done.orphans.append(sub.name)
            continue
        if state["status"] in _ENDED:
            continue
        if text:
            # The round of the checkpoint Tune resumes from (its state can hold a later result whose checkpoint
            # it had not registered yet); Tune's last result when the checkpoint cannot be read.
            last_round = checkpoint_round(state.get("checkpoint_manager"))
            if last_round is None:
                last_round = int(state["last_result"].get("training_iteration") or 0)
            if dropped := _cut_back(sub, text, last_round):
                done.cut[trial_id] = dropped
        wandb = sub.child(WANDB_DIR)
        if wandb.is_dir():
            _move(wandb, experiment.child(META_DIR, SUPERSEDED_DIR, sub.name, WANDB_DIR))
            done.superseded.append(sub.name)
    return done

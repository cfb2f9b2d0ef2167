"""Before Tune restores a sweep, make the stored trial folders agree with Tune's stored state.

Tune saves its experiment state (the trial list, each trial's last result and checkpoint) every few
seconds, and in object storage uploads it together with the trial folders in the background. A driver
killed between two saves leaves trial folders that are newer than the state Tune restores from:

- a trial started after the last save has a folder (rounds, a checkpoint, a W&B run) but no entry in the
  state: Tune will never continue it, and the searcher's stored state does not know it either (both are
  saved at the same moment), so it is moved to ``hpo/orphans/`` (its checkpoints, useless now, are
  deleted) instead of being counted as an extra trial;
- an unfinished trial's ``result.json`` can hold rounds past the checkpoint the state names (the state
  itself can hold a result whose checkpoint it had not registered yet): Tune runs those rounds again from
  that checkpoint, so the stored copies are cut back to it, and every round of a trial is recorded once.
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
_ENDED = ("TERMINATED",)


@dataclass
class Settled:
    orphans: list[str] = field(default_factory=list)  # trial folders moved aside
    cut: dict[str, int] = field(default_factory=dict)  # trial id -> rounds removed from its stored results

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


def _move_aside(trial: Location, orphans: Location) -> None:
    dest = orphans.child(trial.name)
    for f in trial.list_files(recursive=True):
        rel = f.path[len(trial.path) + 1 :]
        if rel.split("/", 1)[0].startswith("checkpoint_"):
            continue
        dest.child(*rel.split("/")).write_bytes(f.read_bytes())
    trial.delete_dir()


def settle(experiment: Location) -> Settled:
    """Bring the trial folders at ``experiment`` in line with Tune's stored state (see the module)."""
    from hpo.core.results import parse_results, tune_states

    states = tune_states(experiment)
    done = Settled()
    if not states:
        return done
    orphans = experiment.child(META_DIR, ORPHANS_DIR)
    for sub in experiment.list_dirs():
        if sub.name == META_DIR:
            continue
        results = sub.child("result.json")
        try:
            text = results.read_text()
        except FileNotFoundError:
            text = ""
        rows = parse_results(text)
        trial_id = rows[-1].get("trial_id") if rows else sub.name.rsplit("_", 1)[-1]
        state = states.get(trial_id)
        if state is None:
            if sub.child("params.json").exists():  # a trial folder, not something else a user put there
                _move_aside(sub, orphans)
                done.orphans.append(sub.name)
            continue
        if state["status"] in _ENDED or not text:
            continue
        # The round of the checkpoint Tune resumes from (its state can hold a later result whose checkpoint
        # it had not registered yet); Tune's last result when the checkpoint cannot be read.
        last_round = checkpoint_round(state.get("checkpoint_manager"))
        if last_round is None:
            last_round = int(state["last_result"].get("training_iteration") or 0)
        kept, dropped = _keep_rows(text, last_round)
        if dropped:
            results.write_text(kept)
            progress = sub.child("progress.csv")
            try:
                progress.write_text(_keep_csv_rows(progress.read_text(), last_round))
            except FileNotFoundError:
                pass
            done.cut[trial_id] = dropped
    return done

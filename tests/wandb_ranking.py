"""Does the W&B runs table of a sweep rank its trials as ``hpo status`` does? Reads the offline run files
(what ``wandb sync`` uploads, promotion's included) and the printed output of ``hpo status``.

    .venv/bin/python -m tests.wandb_ranking runs/quickstart

Prints both rankings side by side; exits 1 if they differ (order, best values or outcome tags).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hpo.core.results import load_sweep
from hpo.tune.wandb_callback import outcome_tag
from tests.wandb_records import runs_as_synced


def status_rows(path: Path) -> list[tuple[str, str, str]]:
    """(trial, best value as printed, outcome) in the order ``hpo status`` prints them."""
    out = subprocess.run([sys.executable, "-m", "hpo.cli", "status", str(path)], capture_output=True, text=True, check=True).stdout
    ids = {t.trial_id for t in load_sweep(path).trials}
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0].split(" ")[0] in ids:
            rows.append((cells[0].split(" ")[0], cells[-3], cells[-1]))
    return rows


def main(path: Path) -> int:
    sweep = load_sweep(path)
    metric, mode = sweep.spec.metric, sweep.spec.mode
    files = [*path.glob(f"{sweep.spec.name}_*/wandb/offline-run-*/run-*.wandb"), *path.glob("hpo/promotion/wandb/offline-run-*/run-*.wandb")]
    runs = {k: r for k, r in runs_as_synced(files).items() if r.job_type == "trial"}
    sign = -1 if mode == "max" else 1
    # the runs table sorted by the column `{metric}.{mode}`, then by Name
    table = sorted(runs.values(), key=lambda r: (sign * r.summary[metric][mode], r.name))
    status = status_rows(path)
    print(f"{'hpo status':<40}| W&B runs table sorted by {metric}.{mode}, then Name")
    for (tid, shown, outcome), run in zip(status, table):
        print(f"{tid} {shown:>7} {outcome:<22}  | {run.run_id} {run.summary[metric][mode]:.4f} best_round={run.summary['best_round']} tags={list(run.tags)}")
    same_order = [s[0] for s in status] == [r.run_id for r in table]
    same_values = [s[1] for s in status] == [f"{r.summary[metric][mode]:.4f}" for r in table]
    same_tags = all(runs[t].tags[0] == outcome_tag(o) for t, _, o in status)
    print(f"{len(status)} trials in hpo status, {len(runs)} trial runs in W&B; same order: {same_order}; same best values: {same_values}; outcome tags match: {same_tags}")
    return 0 if same_order and same_values and same_tags and len(runs) == len(status) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

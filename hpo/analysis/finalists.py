"""A promotion's finalists as stored in ``EXPERIMENT/hpo/finalists/`` (``plan.json`` and the runs' results),
read back into the table ``hpo status``, ``hpo promote`` and the model card show. Reading only: planning and
running the finalists is ``hpo.promotion.finalists``'s."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hpo.core.errors import PromotionError
from hpo.core.results import Sweep, TrialRecord, parse_results
from hpo.core.stats import mean_std
from hpo.core.storage import META_DIR, Location
from trainables.report import RoundReport

FOLDER = "finalists"
PLAN = "plan.json"

def config_key(config: dict[str, Any], rounds: int) -> str:
    return json.dumps(config, sort_keys=True) + f"@{rounds}"


@dataclass
class Finalist:
    rank: int
    trial: TrialRecord
    sweep_value: float
    rounds: int
    seeds: list[int]
    values: dict[int, float | None] = field(default_factory=dict)  # seed -> value at `rounds` (None: failed)

    @property
    def scores(self) -> list[float]:
        return [v for s in self.seeds if (v := self.values.get(s)) is not None]

    @property
    def mean(self) -> float | None:
        return mean_std(self.scores)[0] if self.scores else None

    @property
    def std(self) -> float | None:
        return mean_std(self.scores)[1] if self.scores else None

    def record(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "trial_id": self.trial.trial_id,
            "params": self.trial.params,
            "rounds": self.rounds,
            "sweep_value": self.sweep_value,
            "seed_values": {str(s): self.values.get(s) for s in self.seeds},
            "mean": self.mean,
            "std": self.std,
        }


@dataclass
class Outcome:
    metric: str
    mode: str
    finalists: list[Finalist]
    chosen: Finalist

    def record(self) -> dict[str, Any]:
        return {"metric": self.metric, "chosen": self.chosen.trial.trial_id, "finalists": [f.record() for f in self.finalists]}



def root(sweep_path: Location) -> Location:
    return sweep_path.child(META_DIR, FOLDER)


# --------------------------------------------------------------------------------------- the results
Curves = dict[str, dict[int, float | None]]  # config (with seed) as JSON -> {round: value}; None: failed there


def finished_curves(folder: Location, metric: str) -> Curves:
    """Every finalist trial's values by round, from all runs under ``folder``. Training is a pure function
    of (configuration, seed) and the LR schedule spans the configuration's epochs, so a run's value at
    round r is the value of any run of the same configuration and seed stopped at r: earlier runs are
    reused whatever round they were planned for."""
    out: Curves = {}
    if not folder.is_dir():
        return out
    for run in folder.list_dirs():
        for trial in run.list_dirs():
            results, params = trial.child("result.json"), trial.child("params.json")
            if not (results.is_file() and params.is_file()):
                continue
            curve = out.setdefault(json.dumps(params.read_json(), sort_keys=True), {})
            for row in parse_results(results.read_text()):
                rnd = int(row.get("training_iteration", 0))
                curve[rnd] = RoundReport.from_result(row).value(metric)
    return out


def value_at(curves: Curves, config: dict[str, Any], rounds: int) -> tuple[bool, float | None]:
    """(known, value): the run's value at ``rounds``, or None when it failed at or before that round."""
    curve = curves.get(json.dumps(config, sort_keys=True), {})
    if rounds in curve:
        return True, curve[rounds]
    if any(v is None and r <= rounds for r, v in curve.items()):
        return True, None
    return False, None


def collect(finalists: list[Finalist], curves: Curves) -> None:
    for f in finalists:
        for s in f.seeds:
            known, value = value_at(curves, {**f.trial.params, "seed": s}, f.rounds)
            if known:
                f.values[s] = value


def choose(finalists: list[Finalist], mode: str) -> Finalist:
    """The best mean; a tie goes to the better-ranked configuration."""
    scored = [f for f in finalists if f.mean is not None]
    if not scored:
        raise PromotionError("every finalist run failed: no configuration has a value; see EXPERIMENT/hpo/finalists")
    sign = 1 if mode == "max" else -1
    return max(scored, key=lambda f: (sign * f.mean, -f.rank))


# ----------------------------------------------------------------------------------------- reporting
def _fmt_value(v: float | None) -> str:
    return "failed" if v is None else f"{v:.4f}"


def mean_pm(f: Finalist) -> str:
    if f.mean is None:
        return "-"
    return f"{f.mean:.4f} ± {f.std:.4f}" if f.std is not None else f"{f.mean:.4f}"


def rows(outcome: Outcome) -> list[list[str]]:
    names = sorted({k for f in outcome.finalists for k in f.trial.params})
    head = ["rank", "trial", *names, "rounds", f"sweep {outcome.metric}", *[f"seed {s}" for s in outcome.finalists[0].seeds], "mean ± sd", ""]
    out = [head]
    for f in outcome.finalists:
        cells = [str(f.rank), f.trial.trial_id, *[_param(f.trial.params.get(n, "")) for n in names], str(f.rounds), f"{f.sweep_value:.4f}"]
        cells += [_fmt_value(f.values[s]) if s in f.values else "-" for s in f.seeds]
        cells += [mean_pm(f), "chosen" if f is outcome.chosen else ""]
        out.append(cells)
    return out


def _param(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def print_table(outcome: Outcome, echo: Callable[[str], None]) -> None:
    table = rows(outcome)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    echo(f"finalists ({outcome.metric} at each configuration's winning round; the mean is over the new seeds only):")
    for r in table:
        echo("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    c = outcome.chosen
    echo(f"chosen: {c.trial.trial_id} (rank {c.rank} in the sweep), mean {outcome.metric} {mean_pm(c)} over {len(c.scores)} seed(s)")


def card_markdown(outcome: Outcome) -> str:
    table = rows(outcome)
    lines = ["| " + " | ".join(table[0][:-1]) + " |", "|" + "---|" * (len(table[0]) - 1)]
    for r in table[1:]:
        cells = r[:-1]
        if r[-1]:
            cells[1] = f"**{cells[1]}** (chosen)"
        lines.append("| " + " | ".join(cells) + " |")
    c = outcome.chosen
    return f"""## Finalists over seeds

The sweep's best {len(outcome.finalists)} configurations were trained again with {len(c.seeds)} new training seeds each
(initialisation, batch order and dropout), to the round at which each reached its best in the sweep; the one
with the best mean `{outcome.metric}` was retrained. The sweep's own value is not in the mean: it was chosen for
being high.

{chr(10).join(lines)}
"""


def load_for_status(sweep: Sweep) -> Outcome | None:
    """The finalists as far as they ran (for ``hpo status``); None when promotion has not planned any."""
    folder = root(sweep.path)
    if not folder.child(PLAN).is_file():
        return None
    saved = folder.child(PLAN).read_json()
    by_id = {t.trial_id: t for t in sweep.trials}
    finalists = [
        Finalist(e["rank"], by_id[e["trial_id"]], e["sweep_value"], e["rounds"], e["seeds"])
        for e in saved.get("finalists", [])
        if e["trial_id"] in by_id
    ]
    if not finalists:
        return None
    collect(finalists, finished_curves(folder, saved.get("metric", sweep.spec.metric)))
    scored = [f for f in finalists if f.mean is not None]
    chosen = choose(scored, saved.get("mode", sweep.spec.mode)) if scored else finalists[0]
    return Outcome(saved.get("metric", sweep.spec.metric), saved.get("mode", sweep.spec.mode), finalists, chosen)

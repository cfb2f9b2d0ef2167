"""What the CLI prints about a sweep: the trials table and the end-of-sweep summary (rich)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from hpo.sweep.baseline import describe as describe_baselines
from hpo.sweep.baseline import read as read_baselines
from hpo.analysis.cost import describe as describe_cost
from hpo.analysis.cost import sweep_cost, trial_cost
from hpo.core.results import CONVERGED, ERRORED, FINISHED, STOPPED, Sweep, disk_usage, load_sweep
from hpo.core.storage import META_DIR, Location
from hpo.core.warm import describe_record as describe_warm_start
from hpo.core.warm import kept_record
from trainables.report import LATENCY

_STYLE = {FINISHED: "green", CONVERGED: "green", STOPPED: "yellow", ERRORED: "red"}


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def trials_table(sweep: Sweep, limit: int | None = None) -> Table:
    spec = sweep.spec
    names = list(spec.search_space)
    ranked = sweep.ranked()
    best_id = ranked[0][0].trial_id if ranked else None
    table = Table(title=f"{spec.name}: {len(sweep.trials)} trials, metric {spec.metric} ({spec.mode})")
    gpu = spec.resources.gpu
    others = [metric for metric, _ in spec.objective_pairs()[1:]]  # several objectives: theirs at that round too
    for col in ["trial", *names, "rounds", "trial-s", *(["GPU-s"] if gpu else []), f"best {spec.metric}", *others, "at round", "state"]:
        table.add_column(col, justify="left" if col in ("trial", "state") else "right")
    order = [t for t, _, _ in ranked] + [t for t in sweep.trials if t.best(spec.metric, spec.mode) is None]
    for t in order[:limit]:
        best = t.best(spec.metric, spec.mode)
        planned = t.rounds_planned
        cells = [t.trial_id, *(_fmt(t.params.get(n, "")) for n in names)]
        cells += [f"{t.rounds_done}/{planned}" if planned else str(t.rounds_done)]
        seconds = trial_cost(t).seconds  # resources x this = the trial's CPU- and GPU-seconds
        cells += [f"{seconds:.0f}", *([f"{seconds * gpu:.0f}"] if gpu else [])]
        values = sweep.objective_values(t) if others else None
        cells += [f"{best[0]:.4f}" if best else "-", *(_value(m, v) for m, v in zip(others, values[0][1:] if values else [None] * len(others)))]
        cells += [str(best[1]) if best else "-", t.outcome]
        marker = " *best*" if t.trial_id == best_id else ""
        cells[0] += marker
        style = "bold" if t.trial_id == best_id else _STYLE.get(t.outcome, "red" if t.outcome.startswith("failed") else None)
        table.add_row(*cells, style=style)
    return table


def front_table(sweep: Sweep) -> Table:
    """The Pareto front of a multi-objective sweep: each trial no other beats on every objective, best first by
    the sweep's metric, with each objective's value at its best round for that metric."""
    pairs = sweep.spec.objective_pairs()
    table = Table(title=f"Pareto front of {', '.join(f'{m} ({mode})' for m, mode in pairs)}")
    for col in ["trial", *(m for m, _ in pairs), "at round", "state"]:
        table.add_column(col, justify="left" if col in ("trial", "state") else "right")
    for t, values, rnd in sweep.front():
        table.add_row(t.trial_id, *(_value(m, v) for (m, _), v in zip(pairs, values)), str(rnd), t.outcome)
    return table


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if metric == LATENCY else f"{value:.4f}"


def make_console() -> Console:
    # Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
    return Console() if sys.stdout.isatty() else Console(width=160)


def print_status(path: str, console: Console | None = None) -> Sweep:
    console = console or make_console()
    sweep = load_sweep(path)
    for problem in sweep.damaged:
        console.print(f"warning: {problem}", highlight=False, markup=False, soft_wrap=True)
    baselines = read_baselines(sweep.path)
    console.print(describe_baselines(baselines) if baselines else "baselines: not computed (yet)", highlight=False, soft_wrap=True)
    for line in describe_warm_start(kept_record(sweep.data)):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.print(trials_table(sweep))
    counts = sweep.counts()
    console.print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f"; disk used {disk_usage(sweep.path) / 2**20:.1f} MiB")
    if sweep.ranked():
        t, value, rnd = sweep.winner()
        console.print(f"best: {t.trial_id} {sweep.spec.metric}={value:.4f} at round {rnd} with {t.params}" + _against(baselines, sweep.spec.metric, value), soft_wrap=True)
    if sweep.spec.multi_objective:
        console.print(front_table(sweep))
        _print_within_budget(sweep, console)
    for line in describe_cost(sweep_cost(sweep), _retrain(sweep)):
        console.print(line, highlight=False, soft_wrap=True)
    print_finalists(sweep, console)
    return sweep


def _print_within_budget(sweep: Sweep, console: Console) -> None:
    """The trial promotion would take under the latency gate (the most accurate one within it), or that none is."""
    budget = sweep.latency_budget()
    if budget is None or not sweep.ranked():
        return
    within = sweep.ranked(within_budget=True)
    if within:
        t, value, rnd = within[0]
        console.print(f"best within promotion.gate.max_latency_ms_p95 ({budget:g} ms): {t.trial_id} {sweep.spec.metric}={value:.4f} at round {rnd}", soft_wrap=True)
    else:
        console.print(f"no trial is within promotion.gate.max_latency_ms_p95 ({budget:g} ms): hpo promote would refuse", soft_wrap=True)


def print_finalists(sweep: Sweep, console: Console) -> None:
    """The finalists' runs over seeds, once ``hpo promote`` planned them (as far as they ran)."""
    from hpo.analysis.finalists import load_for_status, print_table
    from hpo.core.errors import DamagedFile

    try:
        outcome = load_for_status(sweep)
    except DamagedFile as err:
        console.print(f"warning: {err}; the finalists are not shown", highlight=False, markup=False, soft_wrap=True)
        return
    if outcome is not None:
        print_table(outcome, lambda line: console.print(line, highlight=False, markup=False))


def _against(baselines: dict | None, metric: str, value: float) -> str:
    """How the best trial compares with the TF-IDF baseline on the validation split."""
    if not baselines or metric not in baselines["tfidf"]:
        return ""
    base = baselines["tfidf"][metric]
    return f"; TF-IDF baseline {base:.4f} ({(value - base) * 100:+.2f} points)"


def _retrain(sweep: Sweep) -> dict | None:
    """The promotion retrain's time, once `hpo promote` has retrained the winner."""
    from hpo.core.results import PROMOTED_MARKER, stored_model

    try:
        return stored_model(sweep.path).child(PROMOTED_MARKER).read_json().get("retrain")
    except (FileNotFoundError, ValueError):
        return None


def wandb_offline_runs(sweep: Sweep) -> list[Location]:
    """The offline W&B run folders stored with the sweep: its trials' and the sweep run's."""
    folders = [t.folder.child("wandb") for t in sweep.trials] + [sweep.path.child(META_DIR, "wandb")]
    return [run for folder in folders for run in folder.list_dirs() if run.name.startswith("offline-run-")]


def stopped_before_learning(sweep: Sweep) -> int | None:
    """The first rung, when ``stop_single_class`` stopped every trial there, still predicting one class."""
    s = sweep.spec.scheduler
    first = min(s.rungs(), default=None)
    if not getattr(s, "stop_single_class", False) or first is None or not sweep.trials:
        return None
    for t in sweep.trials:
        if t.outcome != STOPPED or t.rounds_done != first or not t.last.one_class:
            return None
    return first


def print_sweep_summary(path: str, wandb_mode: str, console: Console | None = None) -> None:
    console = console or make_console()
    sweep = print_status(path, console)
    rung = stopped_before_learning(sweep)
    if rung is not None:
        console.print(
            f"warning: every trial still predicted one class at round {rung} and was stopped there "
            "(scheduler.stop_single_class); raise scheduler.grace_period or set stop_single_class: false",
            style="bold red",
        )
    where = sweep.path
    shown = _quoted(where.uri)
    console.print(f"experiment: {where}")
    if sweep.ranked():
        console.print(f"promote it: hpo promote {shown} --dry-run promoted/{sweep.spec.name}")
    if wandb_mode == "offline":
        runs = wandb_offline_runs(sweep)
        console.print(f"W&B ran offline: {len(runs)} runs under {where.child('*', 'wandb')}; upload them later with")
        if where.is_local:
            # the sweep run first: it is the one that logs the dataset artifact the trials use
            console.print(f"  wandb sync {where.path}/{META_DIR}/wandb/offline-run-* && wandb sync {where.path}/*/wandb/offline-run-* {where.path}/{META_DIR}/baselines/wandb/offline-run-*", soft_wrap=True)  # one line to copy
        else:  # wandb sync reads local folders: copy the runs down first
            console.print(f"  copy {where.child('*', 'wandb', 'offline-run-*')} to a local folder (e.g. with your cloud's CLI), then wandb sync FOLDER/offline-run-*")


def _quoted(text: str) -> str:
    """A path or URI as a shell argument (a URI's ``?`` and ``&`` must be quoted)."""
    import shlex

    return shlex.quote(text)

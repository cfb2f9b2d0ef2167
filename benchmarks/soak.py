"""Fault-injection soak: small sweeps kept in object storage, hit by faults at seeded random moments, then
checked from what the product stores and prints.

Each episode runs the tiny test sweep (a 1-layer offline model, 4 trials, 2 at a time, up to 6 rounds; W&B
offline; ``failures.max_retries: 4``, since an outage can cost a trial a restart or two) with its storage on a
loopback S3 server (moto, ``tests/s3_server.py``), through the CLI as a user would, and injects one or more of
these faults, of different kinds, one at a time: each once the bucket holds a drawn number of trial-rounds, a
drawn 0-4 s later, and once the fault before it is over:

driver_kill     the driver (``hpo sweep`` / ``hpo resume``) killed with SIGKILL; the sweep is then resumed
worker_kill     the process of a running trial (a Ray worker whose command line names the trainable's
                actor, ``ImplicitFunc``) killed with SIGKILL
s3_down         the S3 server's port closed, and its open connections, for 10-60 s (``--quick``: 10-15 s),
                then opened again on the same port with the same buckets (requests are refused meanwhile)
s3_stall        the S3 server frozen (SIGSTOP) as long, then thawed (requests are accepted and never
                answered: clients run into their time-outs)
wandb_readonly  the trials' W&B offline folders (in the driver's staging folder) made read-only for 10-40 s
                (``--quick``: 10-15 s), then writable again

A driver that exits with an error other than by the soak's hand is a violation; the sweep is then resumed, as after
a kill, until it finishes (at most 8 drivers, 20 minutes with ``--quick``, else 40). Then, from the bucket
(``hpo.core.results.load_sweep``, the reader behind ``hpo status``; ``hpo status`` itself; the stored W&B run
files and Optuna journal):

* every planned trial ended exactly once (finished, stopped or converged; none missing, none twice);
* each trial's stored rounds are 1..n, each once;
* one W&B run per trial, whose rounds and best value and round are the ones ``hpo status`` shows;
* the winner's checkpoint is in the bucket;
* the Optuna study and ``hpo status`` agree on every trial's value (completed: its best; pruned: its rounds);
* no console output of the sweep holds a traceback;
* no process of the sweep is left (driver, Ray's daemons, workers) once it has ended.

The processes of an episode are found by an environment variable set for its drivers (Ray's processes
inherit it). Running as root, file modes bind no one, so the drivers then run without the capability that
overrides them (``CAP_DAC_OVERRIDE``, dropped with ``setpriv``), as a user's processes would.

    python benchmarks/run.py soak --episodes 20 --seed 0
    python benchmarks/run.py soak --quick --episodes 3 --seed 0

Episode ``i`` uses seed ``SEED + i``: ``--episodes 1 --seed SEED+i`` replays it (the same faults at the same
trial-rounds; the moments within a round vary with the machine's speed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmarks._common import REPO, command_line, machine_info, write_outputs

KINDS = ("driver_kill", "worker_kill", "s3_down", "s3_stall", "wandb_readonly")
TRIALS = 4
SEED_ENV = "HPO_SOAK_EPISODE"  # set for an episode's drivers; every process of its sweep inherits it
TRIAL_PROCESS = "ImplicitFunc"  # the actor class Ray Tune runs a function trainable in (its process title names it)
# A fault is injected once the bucket holds this many trial-rounds (drawn in 1..FIRST_RUNG_ROUNDS: every
# sweep of 4 trials with a first rung at round 2 stores at least 8).
FIRST_RUNG_ROUNDS = 8
PROCESS_GRACE_S = 30  # how long an ended sweep's processes may take to exit
MAX_RUNS = 8  # drivers per episode (the first and its resumes)


@dataclass
class Fault:
    kind: str
    after_rounds: int  # injected once the bucket holds this many trial-rounds ...
    delay_s: float  # ... and this many seconds later
    hold_s: float = 0.0  # how long an outage or read-only spell lasts
    injected: bool = False
    at_s: float | None = None  # seconds into the episode
    detail: str = ""


@dataclass
class DriverRun:
    command: list[str]
    log: str
    exit_code: int | None = None
    killed: bool = False  # by the soak (driver_kill)
    seconds: float = 0.0


@dataclass
class Episode:
    index: int
    seed: int
    faults: list[Fault]
    runs: list[DriverRun] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    trial_rounds: int = 0
    notes: list[str] = field(default_factory=list)


def plan(seed: int, quick: bool, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """The faults of the episode with ``seed``: 1-2 (``quick``) or 1-3 distinct kinds, at distinct trial-rounds."""
    rng = random.Random(seed)
    n = min(len(kinds), rng.randint(1, 2 if quick else 3))
    chosen = rng.sample(list(kinds), n)
    rounds = sorted(rng.sample(range(1, FIRST_RUNG_ROUNDS + 1), n))
    hold = {"s3_down": (10, 15) if quick else (10, 60), "s3_stall": (10, 15) if quick else (10, 60), "wandb_readonly": (10, 15) if quick else (10, 40)}
    faults = []
    for kind, after in zip(chosen, rounds):
        low, high = hold.get(kind, (0, 0))
        faults.append(Fault(kind, after, round(rng.uniform(0, 4), 1), round(rng.uniform(low, high), 1)))
    return faults


def episode_spec(folder: Path, seed: int) -> dict[str, Any]:
    """The tests' tiny sweep, 4 trials, in the bucket; trials may be restarted often (a worker killed, a
    checkpoint that could not be stored during an outage)."""
    from tests.conftest import tiny_spec

    spec = tiny_spec(folder / "unused", name=f"soak{seed}")
    spec["storage"] = "s3://sweeps/soak"
    spec["searcher"]["seed"] = seed
    spec["budget"]["num_trials"] = TRIALS
    spec["failures"] = {"max_retries": 4}
    return spec


# ------------------------------------------------------------------------------------ processes
def sweep_processes(marker: str) -> list[Any]:
    """The processes whose environment carries the episode's marker (its drivers and everything Ray started)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get(SEED_ENV) == marker:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def describe(p: Any) -> str:
    try:
        return f"{p.pid} {' '.join(p.cmdline()).strip()[:120] or p.name()}"
    except Exception:
        return str(p.pid)


def kill_all(procs: list[Any]) -> None:
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass


def trial_processes(marker: str) -> list[Any]:
    out = []
    for p in sweep_processes(marker):
        try:
            if any(TRIAL_PROCESS in part for part in p.cmdline()):
                out.append(p)
        except Exception:
            continue
    return out


def wait_gone(marker: str, seconds: float) -> list[Any]:
    """The episode's processes still alive after up to ``seconds``."""
    end = time.time() + seconds
    while True:
        left = [p for p in sweep_processes(marker) if _alive(p)]
        if not left or time.time() > end:
            return left
        time.sleep(1)


def _alive(p: Any) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ------------------------------------------------------------------------------------------- faults
class Injector:
    """Injects an episode's faults and undoes the ones that last (outages, read-only folders)."""

    def __init__(self, episode: Episode, server: Any, marker: str, ray_tmp: Path, started: float, say: Callable[[str], None]):
        self.episode, self.server, self.marker, self.ray_tmp, self.started, self.say = episode, server, marker, ray_tmp, started, say
        self.rng = random.Random(episode.seed * 7919)
        self.active: list[tuple[Fault, float, Callable[[], None]]] = []  # fault, when it ends, how to end it
        self.due_at: float | None = None

    @property
    def s3_down(self) -> bool:
        return any(f.kind in ("s3_down", "s3_stall") for f, _, _ in self.active)

    def pending(self) -> list[Fault]:
        return [f for f in self.episode.faults if not f.injected]

    def tick(self, rounds: int | None, driver: subprocess.Popen) -> bool:
        """Inject the next fault when due; end lasting ones whose time is up. True when the driver was killed."""
        now = time.time()
        for item in [a for a in self.active if a[1] <= now]:
            self._end(item)
        nxt = next(iter(self.pending()), None)
        if nxt is None or self.active:  # one fault at a time: the next once the last one is over
            return False
        if self.due_at is None and rounds is not None and rounds >= nxt.after_rounds:
            self.due_at = now + nxt.delay_s
        if self.due_at is None or now < self.due_at:
            return False
        self.due_at = None
        return self.inject(nxt, driver)

    def inject(self, fault: Fault, driver: subprocess.Popen) -> bool:
        fault.at_s = round(time.time() - self.started, 1)
        killed = False
        if fault.kind == "driver_kill":
            fault.detail = f"driver pid {driver.pid}"
            driver.send_signal(signal.SIGKILL)
            killed = True
        elif fault.kind == "worker_kill":
            procs = self._wait_for_trials()
            if not procs:
                fault.detail = "no trial process was running"
                fault.at_s = None
                fault.injected = True
                self.say(f"    {fault.kind}: {fault.detail}; not injected")
                return False
            victim = self.rng.choice(sorted(procs, key=lambda p: p.pid))
            fault.detail = f"trial process {describe(victim)}"
            victim.kill()
        elif fault.kind == "s3_down":
            self.server.go_down()
            fault.detail = f"port {self.server.port} closed for {fault.hold_s:.0f}s"
            self.active.append((fault, time.time() + fault.hold_s, self.server.come_back))
        elif fault.kind == "s3_stall":
            self.server.pause()
            fault.detail = f"server frozen for {fault.hold_s:.0f}s"
            self.active.append((fault, time.time() + fault.hold_s, self.server.resume))
        elif fault.kind == "wandb_readonly":
            modes = self._read_only()
            fault.detail = f"{sum(1 for p in modes if p.name == 'wandb')} W&B folder(s) read-only for {fault.hold_s:.0f}s"
            self.active.append((fault, time.time() + fault.hold_s, lambda: _restore_modes(modes)))
        fault.injected = True
        self.say(f"    t={fault.at_s:.0f}s {fault.kind}: {fault.detail}")
        return killed

    def _wait_for_trials(self, seconds: float = 60) -> list[Any]:
        end = time.time() + seconds
        while time.time() < end:
            procs = trial_processes(self.marker)
            if procs:
                return procs
            time.sleep(0.5)
        return []

    def _read_only(self) -> dict[Path, int]:
        """Every folder and file under the trials' W&B offline folders made read-only; their modes before."""
        modes: dict[Path, int] = {}
        for wandb_dir in self.ray_tmp.glob("ray/session_*/artifacts/*/*/driver_artifacts/*/wandb"):
            for p in [wandb_dir, *wandb_dir.rglob("*")]:
                try:
                    if p.is_symlink():
                        continue
                    mode = p.stat().st_mode & 0o7777
                    modes[p] = mode
                    p.chmod(mode & ~0o222)
                except OSError:
                    continue
        return modes

    def _end(self, item: tuple[Fault, float, Callable[[], None]]) -> None:
        fault, _, end = item
        self.active.remove(item)
        end()
        self.say(f"    t={time.time() - self.started:.0f}s {fault.kind} over")

    def end_all(self) -> None:
        """Let every lasting fault run its time out, then end it (before a resume, and at the end)."""
        for item in sorted(self.active, key=lambda a: a[1]):
            time.sleep(max(0.0, item[1] - time.time()))
            self._end(item)


def _restore_modes(modes: dict[Path, int]) -> None:
    for p, mode in modes.items():
        try:
            p.chmod(mode)
        except OSError:
            pass


# --------------------------------------------------------------------------------------- checks
def stored_rounds(path: str) -> int | None:
    """Trial-rounds the bucket holds so far (None: not readable now)."""
    from hpo.core.results import load_sweep

    try:
        return sum(len(t.rounds) for t in load_sweep(path).trials)
    except Exception:
        return None


def check_console(run: DriverRun, violations: list[str]) -> None:
    text = Path(run.log).read_text(errors="replace")
    if "Traceback" in text:
        at = text.index("Traceback")
        violations.append(f"{' '.join(run.command[:1])}: a traceback on the console ({run.log}): " + " | ".join(text[at:].splitlines()[:12])[:600])
    if not run.killed and run.exit_code != 0:
        last = " | ".join(text.strip().splitlines()[-3:])[:400]
        violations.append(f"{' '.join(run.command[:1])} exited {run.exit_code} ({run.log}): {last}")


def check_sweep(path: str, copy: Path, violations: list[str]) -> dict[str, Any]:
    """What the product stored, checked: trials, rounds, W&B runs, the winner's checkpoint, the study."""
    import math

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from hpo.core.results import CONVERGED, FINISHED, STOPPED, load_sweep
    from hpo.core.storage import Location
    from tests.wandb_records import runs_as_synced

    sweep = load_sweep(path)
    spec = sweep.spec
    metric, mode = spec.metric, spec.mode
    ids = [t.trial_id for t in sweep.trials]
    if len(ids) != spec.budget.num_trials or len(set(ids)) != len(ids):
        violations.append(f"trials: {len(ids)} stored ({len(set(ids))} distinct), {spec.budget.num_trials} planned: {sorted(ids)}")
    configs = [json.dumps(t.params, sort_keys=True) for t in sweep.trials]
    if len(set(configs)) != len(configs):
        violations.append("trials: a configuration was run as two trials")
    for t in sweep.trials:
        if t.status != "TERMINATED" or t.outcome not in (FINISHED, STOPPED, CONVERGED):
            violations.append(f"trial {t.trial_id}: ended {t.status} / {t.outcome} (error: {t.error})")
        rounds = [r.get("training_iteration") for r in t.rounds]
        if rounds != list(range(1, len(rounds) + 1)) or not rounds:
            violations.append(f"trial {t.trial_id}: stored rounds {rounds}, not 1..n each once")
    Location.parse(path).download_dir(copy)
    # W&B: one run per trial (as `wandb sync` would leave them), with the rounds and best `hpo status` shows
    files = sorted(copy.glob(f"{spec.name}_*/wandb/offline-run-*/run-*.wandb"))
    runs = {k: r for k, r in runs_as_synced(files).items() if r.job_type == "trial"}
    if set(runs) != set(ids):
        violations.append(f"W&B: runs {sorted(runs)} for trials {sorted(ids)}")
    for t in sweep.trials:
        run = runs.get(t.trial_id)
        best = t.best(metric, mode)
        if run is None or best is None:
            continue
        logged = sorted(h["training_iteration"] for h in run.history if "training_iteration" in h)
        stored = [r.get("training_iteration") for r in t.rounds]
        if logged != stored:
            violations.append(f"W&B run {t.trial_id}: rounds {logged}, stored {stored}")
        said = (run.summary.get(metric) or {}).get(mode)
        if said is None or not math.isclose(said, best[0], rel_tol=1e-9) or run.summary.get("best_round") != best[1]:
            violations.append(f"W&B run {t.trial_id}: best {said} at round {run.summary.get('best_round')}, hpo status {best[0]} at round {best[1]}")
        if not t.folder.child("wandb-logged.json").is_file():
            violations.append(f"W&B run {t.trial_id}: not marked as completely written (wandb-logged.json)")
    # the winner's checkpoint
    winner, value, rnd = sweep.winner()
    kept = [d.name for d in winner.folder.list_dirs() if d.name.startswith("checkpoint_")]
    if not kept:
        violations.append(f"winner {winner.trial_id} ({metric}={value:.4f} at round {rnd}): no checkpoint in the bucket")
    # the study: completed trials hold their best value, pruned ones their rounds; none still running
    journal = copy / "hpo" / "optuna.journal"
    study = optuna.load_study(study_name=spec.name, storage=JournalStorage(JournalFileBackend(str(journal))))
    names = list(spec.search_space)
    by_params: dict[str, list[Any]] = {}
    for ot in study.trials:
        by_params.setdefault(json.dumps({k: ot.params.get(k) for k in names}, sort_keys=True), []).append(ot)
    states = [ot.state for ot in study.trials]
    if optuna.trial.TrialState.RUNNING in states:
        violations.append(f"study: trials still RUNNING: {[ot.number for ot in study.trials if ot.state == optuna.trial.TrialState.RUNNING]}")
    ended = [ot for ot in study.trials if ot.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    if len(ended) != len(ids):
        violations.append(f"study: {len(ended)} completed or pruned trials, {len(ids)} trials")
    for t in sweep.trials:
        best = t.best(metric, mode)
        matches = [ot for ot in by_params.get(json.dumps({k: t.params.get(k) for k in names}, sort_keys=True), []) if ot in ended]
        if len(matches) != 1 or best is None:
            violations.append(f"study: trial {t.trial_id} matches {len(matches)} ended study trials")
            continue
        ot = matches[0]
        if t.outcome == STOPPED:
            curve = ot.intermediate_values
            if ot.state != optuna.trial.TrialState.PRUNED or sorted(curve) != [r["training_iteration"] for r in t.rounds]:
                violations.append(f"study: trial {t.trial_id} (stopped at round {t.rounds_done}) is {ot.state.name} with rounds {sorted(curve)}")
            elif not math.isclose((max if mode == "max" else min)(curve.values()), best[0], rel_tol=1e-9):
                violations.append(f"study: trial {t.trial_id}'s rounds reach {metric} {(max if mode == 'max' else min)(curve.values())}, hpo status {best[0]}")
        elif ot.state != optuna.trial.TrialState.COMPLETE or ot.value is None or not math.isclose(ot.value, best[0], rel_tol=1e-9):
            violations.append(f"study: trial {t.trial_id} ({t.outcome}) is {ot.state.name} with value {ot.value}, hpo status {best[0]}")
    return {"trials": len(ids), "trial_rounds": sum(len(t.rounds) for t in sweep.trials), "outcomes": sweep.counts(), "winner": winner.trial_id, "best": value, "best_round": rnd}


def check_status(path: str, env: dict[str, str], cwd: Path, violations: list[str]) -> None:
    """`hpo status` reads the bucket, prints no traceback, and names the winner ``load_sweep`` finds."""
    from hpo.core.results import load_sweep

    proc = subprocess.run([sys.executable, "-m", "hpo.cli", "status", path], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Traceback" in out:
        violations.append(f"hpo status exited {proc.returncode}: {' | '.join(out.strip().splitlines()[-3:])[:400]}")
        return
    sweep = load_sweep(path)
    t, value, rnd = sweep.winner()
    line = f"best: {t.trial_id} {sweep.spec.metric}={value:.4f} at round {rnd}"
    if line not in out:
        violations.append(f"hpo status does not say '{line}'")


# --------------------------------------------------------------------------------------- episodes
def _driver_command(args: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "hpo.cli", *args]
    if os.geteuid() == 0 and shutil.which("setpriv"):  # root ignores file modes: not without this capability
        cmd = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", "--", *cmd]
    return cmd


def run_episode(index: int, seed: int, quick: bool, root: Path, kinds: tuple[str, ...], say: Callable[[str], None]) -> Episode:
    from tests.conftest import cli_env, write_spec
    from tests.s3_server import S3Server

    episode = Episode(index, seed, plan(seed, quick, kinds))
    folder = root / f"e{index}"
    folder.mkdir(parents=True)
    say(f"episode {index} (seed {seed}): " + ", ".join(f"{f.kind} after {f.after_rounds} trial-rounds" for f in episode.faults))
    marker = f"{os.getpid()}-{index}"
    ray_tmp = folder / "t"
    ray_tmp.mkdir()
    server = S3Server(folder / "s3").start()
    started = time.time()
    deadline = started + (20 if quick else 40) * 60
    saved_env = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)  # this process reads the bucket too
    try:
        server.filesystem().create_dir("sweeps")
        spec = episode_spec(folder, seed)
        spec_file = write_spec(folder / "soak.yaml", spec)
        path = f"{spec['storage']}/{spec['name']}"
        env = {**cli_env(folder), **server.env, "RAY_TMPDIR": str(ray_tmp), SEED_ENV: marker}
        injector = Injector(episode, server, marker, ray_tmp, started, say)
        args = ["sweep", str(spec_file)]
        finished = False
        while len(episode.runs) < MAX_RUNS and time.time() < deadline:
            run = DriverRun(args, str(folder / f"driver{len(episode.runs) + 1}.log"))
            episode.runs.append(run)
            t0 = time.time()
            with open(run.log, "w") as log:
                proc = subprocess.Popen(_driver_command(args), cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                last_read = 0.0
                rounds = None
                while proc.poll() is None and time.time() < deadline:
                    if not injector.s3_down and time.time() - last_read > 2:
                        rounds, last_read = stored_rounds(path), time.time()
                    if injector.tick(rounds, proc):
                        run.killed = True
                    time.sleep(0.5)
                if proc.poll() is None:
                    episode.violations.append(f"the sweep did not finish within {(deadline - started) / 60:.0f} minutes ({run.log})")
                    proc.kill()
                run.exit_code = proc.wait()
            run.seconds = round(time.time() - t0, 1)
            say(f"    {args[0]} {'killed' if run.killed else f'exited {run.exit_code}'} after {run.seconds:.0f}s")
            injector.end_all()  # an outage lasts its time whether or not the driver is still there
            check_console(run, episode.violations)
            if run.killed:
                # what a killed driver leaves: Ray's processes end once they miss it
                left = wait_gone(marker, PROCESS_GRACE_S)
                if left:
                    episode.violations.append(f"{len(left)} process(es) of the killed driver still running {PROCESS_GRACE_S}s later: " + "; ".join(describe(p) for p in left[:6]))
                    kill_all(left)
            elif run.exit_code == 0:
                finished = True
                break
            args = ["resume", path]
        if not finished:
            episode.violations.append(f"the sweep did not finish after {len(episode.runs)} driver run(s)")
        left = wait_gone(marker, PROCESS_GRACE_S)
        if left:
            episode.violations.append(f"{len(left)} process(es) of the sweep still running {PROCESS_GRACE_S}s after it ended: " + "; ".join(describe(p) for p in left[:6]))
            kill_all(left)
        for f in episode.faults:
            if not f.injected:
                episode.notes.append(f"{f.kind} not injected: the sweep ended before {f.after_rounds} trial-rounds")
        if finished:
            try:
                facts = check_sweep(path, folder / "copy", episode.violations)
                episode.trial_rounds = facts["trial_rounds"]
                episode.notes.append(f"{facts['outcomes']}; winner {facts['winner']} {facts['best']:.4f} at round {facts['best_round']}")
                check_status(path, env, folder, episode.violations)
            except Exception as err:  # a reader failing on what the sweep stored is a finding too
                episode.violations.append(f"checking the stored sweep failed: {type(err).__name__}: {' '.join(str(err).split())[:400]}")
    finally:
        kill_all([p for p in sweep_processes(marker) if _alive(p)])
        server.stop()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    episode.seconds = round(time.time() - started, 1)
    for v in episode.violations:
        say(f"    VIOLATION (episode {index}, seed {seed}): {v}")
    say(f"    episode {index}: {episode.seconds:.0f}s, {len(episode.runs)} driver run(s), {len(episode.violations)} violation(s)")
    return episode


def run(out: Path, quick: bool, episodes: int, seed: int, keep: bool = False, kinds: tuple[str, ...] = KINDS) -> int:
    """Run the episodes, write soak(-quick).json/.md; return the number of violations."""
    machine = machine_info()
    root = Path(tempfile.mkdtemp(prefix="hpo-soak-"))
    print(f"soak: {episodes} episode(s){' (quick)' if quick else ''}, seeds {seed}-{seed + episodes - 1}, faults from {', '.join(kinds)}; work folder {root}", flush=True)
    done: list[Episode] = []
    started = time.time()
    try:
        for i in range(episodes):
            done.append(run_episode(i, seed + i, quick, root, kinds, lambda line: print(line, flush=True)))
    finally:
        if keep:
            print(f"episode folders (logs, copies of the sweeps) kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    payload = {
        "benchmark": "soak",
        "machine": machine,
        "quick": quick,
        "seed": seed,
        "kinds": list(kinds),
        "seconds": round(time.time() - started, 1),
        "episodes": [asdict(e) for e in done],
        "faults": _fault_counts(done),
        "violations": [{"episode": e.index, "seed": e.seed, "violation": v} for e in done for v in e.violations],
        "command": command_line(),
    }
    write_outputs(out, "soak-quick" if quick else "soak", payload, markdown(payload))
    return len(payload["violations"])


def _fault_counts(episodes: list[Episode]) -> dict[str, int]:
    counts = {k: 0 for k in KINDS}
    for e in episodes:
        for f in e.faults:
            if f.injected and f.at_s is not None:
                counts[f.kind] += 1
    return counts


def markdown(p: dict[str, Any]) -> str:
    eps = p["episodes"]
    lines = [
        f"**Soak**: {len(eps)} episode(s) of the tiny sweep (4 trials, 2 at a time) on a loopback S3 server"
        f"{' (quick: outages of 10-15 s)' if p['quick'] else ''}, seeds {p['seed']}-{p['seed'] + len(eps) - 1}, "
        f"{p['seconds'] / 60:.0f} minutes; faults injected: " + ", ".join(f"{k} {n}" for k, n in p["faults"].items()) + ".",
        "",
        "| episode | seed | faults (at trial-round, seconds in) | driver runs | trial-rounds | seconds | violations |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for e in eps:
        faults = "; ".join(f"{f['kind']} @{f['after_rounds']}" + (f", {f['at_s']:.0f}s" if f["at_s"] is not None else " (not injected)") for f in e["faults"])
        lines.append(f"| {e['index']} | {e['seed']} | {faults} | {len(e['runs'])} | {e['trial_rounds']} | {e['seconds']:.0f} | {len(e['violations'])} |")
    lines.append("")
    if p["violations"]:
        lines.append("Violations:")
        lines.append("")
        lines += [f"- episode {v['episode']} (seed {v['seed']}): {v['violation']}" for v in p["violations"]]
    else:
        lines.append("No violations.")
    lines += ["", f"Run {p['machine']['date_utc']} with ray {p['machine']['versions']['ray']}:", "", f"```bash\n{p['command']}\n```"]
    return "\n".join(lines)


def main_args(args: Any) -> int:
    """``benchmarks/run.py soak``: the exit status (1 on any violation)."""
    kinds = tuple(args.kinds or KINDS)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        print(f"error: --kinds {' '.join(unknown)}: not a fault kind; choose from {', '.join(KINDS)}", file=sys.stderr)
        return 2
    violations = run(args.out.resolve(), args.quick, args.episodes, args.seed, args.keep, kinds)
    print(f"soak: {violations} violation(s)", flush=True)
    return 1 if violations else 0

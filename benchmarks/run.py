"""Benchmarks behind the figures in docs/performance.md.

    python benchmarks/run.py {throughput,sweep,search,all,scale,warm} [--quick] [--out benchmarks/results]

throughput  training samples/s: our loop against the usual transformers.Trainer setup (+ MFU on a GPU)
sweep       the quickstart sweep end to end: busy fraction of the trial slots, trial start-up
search      ASHA+TPE against random search with and without early stopping: best accuracy, compute, anytime curve, per seed
all         the three, sharing the ASHA+TPE sweeps between search and sweep
replay      ASHA settings replayed on random search's learning curves (--from search.json or sweep folders)
scale       the driver's overhead per trial at 16, 64 and 256 tiny trials, against bare Ray Tune; `hpo status` time
warm        a sweep warm-started from an earlier one against the same sweep cold: compute to reach the earlier best
soak        faults injected into small sweeps on a loopback S3 server (killed driver or trial, storage down,
            W&B folder read-only), then what the sweep stored checked; exits 1 on any violation

Each comparison runs inside this one process tree (sweeps in child processes, one Ray each), repeats,
and writes NAME.json (every figure, plus the machine) and NAME.md (the table, printed too) under
--out. --quick is a smoke version with tiny sizes (NAME-quick.*). Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Run as a script from anywhere: the repository root holds hpo/, trainables/ and benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO, BenchError  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("benchmark", choices=["throughput", "sweep", "search", "all", "replay", "scale", "warm", "soak"])
    p.add_argument("--quick", action="store_true", help="smoke sizes: seconds to a minute or two per benchmark")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for NAME.json and NAME.md")
    p.add_argument("--reps", type=int, default=None, help="repetitions (throughput, sweep, warm) and seeds (search); default 3, --quick 1")
    p.add_argument("--threads", type=int, default=2, help="torch threads of both throughput sides (default 2)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of a GPU missing from the MFU table")
    p.add_argument("--keep", action="store_true", help="keep the sweeps' experiment folders and logs (printed at the end)")
    p.add_argument("--trials", type=int, nargs="+", default=None, help="scale: the sweep sizes (default 16 64 256; --quick 4 8)")
    p.add_argument("--from", dest="sources", type=Path, nargs="+", default=None, help="replay: search.json or sweep folders without early stopping; search: a search.json whose runs are analysed again (no sweeps run)")
    p.add_argument("--resume", action="store_true", help="search: keep the runs saved in OUT/search.json by a run cut short, and run only the arm-seed pairs it lacks")
    p.add_argument("--episodes", type=int, default=None, help="soak: episodes (default 20, --quick 3)")
    p.add_argument("--seed", type=int, default=0, help="soak: the first episode's seed (episode i uses SEED + i)")
    p.add_argument("--kinds", nargs="+", default=None, help="soak: only these faults (driver_kill worker_kill s3_down s3_stall wandb_readonly)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_sweep-worker"]:  # a child process running one sweep (benchmarks/_sweeps.py)
        os.chdir(REPO)
        from benchmarks._sweeps import worker

        return worker(argv[1])
    if argv[:1] == ["_bare-worker"]:  # a child process running one bare Ray Tune run (benchmarks/scale.py)
        os.chdir(REPO)
        from benchmarks.scale import bare_worker

        return bare_worker(argv[1])
    args = _parser().parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    out = args.out.resolve()
    if args.benchmark == "replay":
        from benchmarks import replay

        sources = [s.resolve() for s in (args.sources or [out / "search.json"])]
        try:
            replay.run(out, sources)
        except BenchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    if args.benchmark == "search" and args.sources:
        from benchmarks import search

        try:
            search.reanalyse(out, args.sources[0].resolve())
        except BenchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    os.chdir(REPO)  # the spec's relative data paths are resolved from the repository root
    if args.benchmark == "soak":
        from benchmarks import soak

        args.episodes = args.episodes or (3 if args.quick else 20)
        return soak.main_args(args)
    from benchmarks import scale, search, sweep, throughput, warm
    from benchmarks._sweeps import SweepRunner

    storage = Path(tempfile.mkdtemp(prefix="hpo-bench-"))
    runner = SweepRunner(storage)
    try:
        if args.benchmark in ("throughput", "all"):
            throughput.run(out, args.quick, reps, args.threads, args.peak_tflops)
        # search before sweep: in `all` the sweep benchmark reuses search's ASHA+TPE runs (same specs).
        if args.benchmark in ("search", "all"):
            search.run(out, args.quick, reps, runner, resume=args.resume)
        if args.benchmark in ("sweep", "all"):
            sweep.run(out, args.quick, reps, runner)
        if args.benchmark == "scale":
            scale.run(out, args.quick, runner, args.trials)
        if args.benchmark == "warm":
            warm.run(out, args.quick, reps, runner)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"experiment folders and logs kept in {storage}")
        else:
            shutil.rmtree(storage, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

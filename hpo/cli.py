"""``hpo``: a table of commands. Each parses its flags, builds a spec object and calls one function.

Every ``HpoError`` becomes one readable message and its exit code; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence


def _sweep(args: argparse.Namespace) -> int:
    if args.resume:
        given = [flag for flag, value in (("a spec file", args.spec), ("--name", args.name), ("--storage", args.storage), ("--wandb-mode", args.wandb_mode), ("--verbose", args.verbose), ("--check", args.check), ("--warm-start", args.warm_start)) if value]
        if given:
            raise _usage(f"--resume continues the sweep at {args.resume} as it was started; {', '.join(given)} cannot change it (drop them)")
        return _resume(argparse.Namespace(**{**vars(args), "path": args.resume}))
    if args.spec is None:
        raise _usage("give a spec file, or --resume PATH")
    spec = _load(args.spec, {"name": args.name, "storage": args.storage, "warm_start": args.warm_start})
    if args.check:
        from hpo.sweep.driver import check_sweep

        check_sweep(spec, address=args.address, wandb_mode=args.wandb_mode, num_cpus=args.num_cpus)
        print(f"{args.spec}: ready: `hpo sweep` would run {spec.budget.num_trials} trials of {spec.name}, {spec.budget.max_concurrent} at a time (nothing was started)")
        return 0
    from hpo.analysis.report import print_sweep_summary
    from hpo.sweep.driver import run_sweep
    from hpo.tune.run import shutdown_ray

    try:
        outcome = run_sweep(spec, address=args.address, wandb_mode=args.wandb_mode, num_cpus=args.num_cpus, verbose=args.verbose)
    finally:
        shutdown_ray()
    print_sweep_summary(outcome.path, outcome.wandb_mode)
    return 0


def _load(spec_path: str, overrides: dict) -> object:
    """The spec from a file, or from object storage (the spec ``hpo submit`` stored beside the sweep)."""
    from hpo.core.spec import load_spec
    from hpo.core.storage import Location, is_remote

    if is_remote(spec_path):
        try:
            text = Location.parse(spec_path).read_text()
        except FileNotFoundError:
            raise _usage(f"{spec_path}: no such spec file") from None
        return load_spec(spec_path, overrides, text=text)
    return load_spec(spec_path, overrides)


def _submit(args: argparse.Namespace) -> int:
    from hpo.sweep.submit import submit

    spec = _load(args.spec, {"name": args.name, "storage": args.storage, "warm_start": args.warm_start})
    outcome = submit(spec, args.address, args.working_dir, args.spec, wandb_mode=args.wandb_mode, follow=args.follow)
    return 0 if outcome.status in (None, "SUCCEEDED") else 1


def _resume(args: argparse.Namespace) -> int:
    from hpo.sweep.driver import resume_sweep
    from hpo.tune.run import shutdown_ray
    from hpo.analysis.report import print_sweep_summary

    try:
        outcome = resume_sweep(args.path, address=args.address, num_cpus=args.num_cpus)
    finally:
        shutdown_ray()
    print_sweep_summary(outcome.path, outcome.wandb_mode)
    return 0


def _status(args: argparse.Namespace) -> int:
    from hpo.analysis.report import print_status

    print_status(args.path)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from hpo.core.schema import schema_text, write_schema

    if args.output is None:
        print(schema_text(), end="")
    else:
        write_schema(args.output)
    return 0


def _promote(args: argparse.Namespace) -> int:
    from hpo.promotion.promote import PromoteOptions, promote

    if (args.repo_id is None) == (args.dry_run is None):
        raise _usage("give exactly one of --repo-id OWNER/NAME or --dry-run DIR")
    promote(
        args.path,
        PromoteOptions(
            repo_id=args.repo_id,
            dry_run_dir=args.dry_run,
            private=args.private,
            work_dir=args.work_dir,
            wandb_mode=args.wandb_mode,
            gpus=args.gpus,
            address=args.address,
        ),
    )
    return 0


def _init(args: argparse.Namespace) -> int:
    from hpo.sweep.init import InitOptions, init_spec

    init_spec(InitOptions(args.data, output=args.output, force=args.force, text_column=args.text_column, label_column=args.label_column, model=args.model))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from hpo.analysis.dashboard import serve

    serve(args.path, host=args.host, port=args.port)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of CPUs of at least 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of GPUs (0 or more)")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a port: a whole number from 1 to 65535")
    return value


def _usage(message: str) -> Exception:
    from hpo.core.errors import UsageError

    return UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpo", description="Hyperparameter sweeps for transformer text classifiers on Ray Tune.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sweep", help="run a sweep from a spec (YAML)")
    s.add_argument("spec", nargs="?", help="sweep spec, e.g. search_spaces/quickstart.yaml")
    s.add_argument("--resume", metavar="PATH", help="continue the sweep at PATH after its driver died")
    s.add_argument("--address", help="Ray cluster to join (e.g. 'auto'); default: embedded local Ray")
    s.add_argument("--storage", help="override the spec's storage (local folder, s3://, gs://)")
    s.add_argument("--name", help="override the spec's sweep name")
    s.add_argument("--wandb-mode", choices=["online", "offline", "disabled"], help="override tracking.mode")
    s.add_argument("--num-cpus", type=_positive_int, help="CPUs for embedded Ray (default: all)")
    s.add_argument("--verbose", action="store_true", help="also print Ray Tune's own progress tables")
    s.add_argument(
        "--warm-start", nargs="+", metavar="PATH",
        help="start from the ended trials of earlier sweeps (their experiment folders, local or s3://...): replaces the spec's warm_start list",
    )
    s.add_argument("--check", action="store_true", help="check the spec, its data and base model as a sweep does before it starts, then exit (starts nothing)")
    s.set_defaults(run=_sweep)

    i = sub.add_parser("init", help="write a commented sweep spec for a data set, ready for `hpo sweep`")
    i.add_argument("data", help="a data file (parquet, csv, tsv, json, jsonl), a folder of train.* / test.* / validation.* files, or a Hub dataset id in the local datasets cache")
    i.add_argument("-o", "--output", metavar="SPEC", help="where to write the spec (default: NAME.yaml here, NAME from the data)")
    i.add_argument("--force", action="store_true", help="replace SPEC if it exists")
    i.add_argument("--text-column", metavar="C", help="the column of texts (default: found in the data)")
    i.add_argument("--label-column", metavar="L", help="the column of labels (default: found in the data)")
    i.add_argument("--model", metavar="M", help="base model, a Hub id or a local folder (default: distilbert-base-uncased with GPUs, the offline preset without)")
    i.set_defaults(run=_init)

    sb = sub.add_parser("submit", help="run a sweep as a job on a Ray cluster (Ray's Job Submission API)")
    sb.add_argument("spec", help="sweep spec, e.g. search_spaces/quickstart.yaml")
    sb.add_argument("--address", required=True, help="the cluster's Ray dashboard, e.g. http://HEAD:8265")
    sb.add_argument("--storage", help="override the spec's storage: object storage every node sees (s3://, gs://)")
    sb.add_argument("--name", help="override the spec's sweep name")
    sb.add_argument("--wandb-mode", choices=["online", "offline", "disabled"], help="override tracking.mode")
    sb.add_argument("--warm-start", nargs="+", metavar="URI", help="start from the ended trials of earlier sweeps in object storage (s3://...): replaces the spec's warm_start list")
    sb.add_argument("--working-dir", default=".", help="the project folder shipped with the job (default: the current one)")
    sb.add_argument("--follow", action="store_true", help="print the job's logs until it ends; exit 1 unless it succeeded")
    sb.set_defaults(run=_submit)

    r = sub.add_parser("resume", help="continue a sweep after its driver died (same as sweep --resume)")
    r.add_argument("path", help="experiment folder, e.g. runs/quickstart")
    r.add_argument("--address", help="Ray cluster to join; default: embedded local Ray")
    r.add_argument("--num-cpus", type=_positive_int, help="CPUs for embedded Ray (default: all)")
    r.set_defaults(run=_resume)

    st = sub.add_parser("status", help="table of a sweep's trials (while it runs or after)")
    st.add_argument("path", help="experiment folder, e.g. runs/quickstart")
    st.set_defaults(run=_status)

    sc = sub.add_parser("schema", help="print the sweep spec's JSON Schema, for editors that validate and complete specs")
    sc.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead (a new file, or an earlier schema it replaces)")
    sc.set_defaults(run=_schema)

    pr = sub.add_parser("promote", help="retrain the best config, gate it, publish it and verify the copy")
    pr.add_argument("path", help="experiment folder of a finished sweep")
    pr.add_argument("--repo-id", help="Hub repo OWNER/NAME to publish to")
    pr.add_argument("--dry-run", metavar="DIR", help="write the files that would be uploaded to DIR, verify from there")
    pr.add_argument("--private", action="store_true", help="create the Hub repo as private")
    pr.add_argument("--work-dir", help="where the retrained model is kept (default: PATH/hpo/promotion)")
    pr.add_argument("--wandb-mode", choices=["online", "offline", "disabled"], help="override tracking.mode")
    pr.add_argument("--gpus", type=_count, help="GPUs for the retrain (above 1: data-parallel); default: all of this machine's, 0: the CPU")
    pr.add_argument("--address", help="Ray cluster for the finalists' runs (e.g. 'auto'); default: embedded local Ray")
    pr.set_defaults(run=_promote)

    d = sub.add_parser("dashboard", help="optuna-dashboard on a sweep's study")
    d.add_argument("path", help="experiment folder")
    d.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface of this machine)")
    d.add_argument("--port", type=_port, default=8080, help="port to serve on (1 to 65535)")
    d.set_defaults(run=_dashboard)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from hpo.core.errors import HpoError

    run: Callable[[argparse.Namespace], int] = args.run
    # W&B hands its background service to child processes through WANDB_SERVICE. A service inherited from
    # the process that started hpo (a notebook, a test runner) would carry this sweep's runs and outlive a
    # killed driver, still holding its runs open, so a resume could not reopen them: hpo starts its own.
    os.environ.pop("WANDB_SERVICE", None)
    if not args.debug:
        from hpo.tune.run import quiet_libraries  # light: Ray itself loads when a command needs it

        quiet_libraries()
    try:
        return run(args)
    except HpoError as err:
        if args.debug:
            raise
        print(f"hpo {args.command}: error: {_bounded(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"hpo {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug or an unforeseen failure: one line, the traceback under --debug
        if args.debug:
            raise
        from hpo.core.errors import OutOfMemory, is_out_of_memory

        if is_out_of_memory(err):  # Ray's memory monitor, wherever it surfaced: one line, its report under --debug
            print(f"hpo {args.command}: error: {OutOfMemory(*_RUNNING.get(args.command, ('the command',)))}", file=sys.stderr)
            return 1
        text = _bounded(" ".join(str(err).split()))
        print(f"hpo {args.command}: unexpected error: {type(err).__name__}: {text} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


# What each command runs on Ray, for the one line that says Ray's memory monitor stopped it.
_RUNNING = {
    "sweep": ("the sweep's trials", "continue it with `hpo resume PATH` (the experiment folder printed above): its trials continue from their checkpoints"),
    "resume": ("the sweep's trials",),
    "promote": ("the finalists' runs or the retrain",),
}

_LINE_MAX = 900  # characters of one line of a message; every value in it is cut shorter where it is written


def _bounded(message: str) -> str:
    """Each line of a message at most ``_LINE_MAX`` characters: a message, never a dump."""
    return "\n".join(line if len(line) <= _LINE_MAX else line[: _LINE_MAX - 25] + f" ... ({len(line):,} characters)" for line in message.split("\n"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The service's errors and the exit code each kind maps to. The root, ``HpoError``, and the errors of
what runs inside a trial (``DataError``, ``ModelError``) live in ``trainables.errors``, the lower layer."""

from __future__ import annotations

from trainables.errors import DataError, HpoError, ModelError

__all__ = [
    "DamagedFile", "DataError", "ExperimentError", "GateError", "HpoError", "Interrupted", "ModelError", "OutOfMemory", "PromotionError",
    "SpecError", "StorageError", "Unreachable", "UsageError", "WarmStartError", "is_out_of_memory",
]


class SpecError(HpoError):
    """The sweep spec (or a CLI override of it) is invalid. Nothing was started."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in the sweep spec:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class UsageError(HpoError):
    """The command line is wrong: a missing or conflicting flag, a bad value. Nothing was started."""

    exit_code = 2


class Interrupted(HpoError):
    """The sweep was stopped by Ctrl-C or SIGTERM; its state was saved and it can be resumed."""

    exit_code = 130


class Unreachable(HpoError):
    """A service the command needs cannot be reached (exit 1: a network problem, not bad input)."""


class ExperimentError(HpoError):
    """An experiment directory is missing, unreadable, or holds no usable trial."""


class DamagedFile(ExperimentError, ValueError):
    """A file of a sweep is not what was written (cut short, or edited by hand); a ``ValueError`` too, as a JSON
    parse error is, for readers that take an unreadable optional file as missing."""


class PromotionError(HpoError):
    """Promotion could not finish: retrain, publish or verification failed."""


class GateError(PromotionError):
    """The retrained model failed a quality gate; nothing was published."""

    exit_code = 3


class WarmStartError(HpoError):
    """An earlier sweep named in ``warm_start`` (or ``--warm-start``) cannot start this one: not a sweep folder, no
    ended trial, another metric or mode. Nothing was started."""

    exit_code = 2


class StorageError(HpoError):
    """The sweep's storage cannot be used: a bad URI, a missing bucket, no access, an endpoint that is down.
    Found before any data is loaded or Ray is started."""

    exit_code = 2


# What Ray says when its memory monitor kills workers (ray.exceptions.OutOfMemoryError, or a RuntimeError from
# Ray Train or Tune carrying the same report).
_RAY_OOM = ("killed due to the node running low on memory", "killed due to memory pressure (OOM)")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err``, or an error it was raised from, is Ray's memory monitor killing workers (not a GPU's
    own out-of-memory error, which names the GPU)."""
    seen: BaseException | None = err
    for _ in range(20):  # a chain, bounded
        if seen is None:
            return False
        if (type(seen).__name__ == "OutOfMemoryError" and type(seen).__module__.startswith("ray")) or any(s in str(seen) for s in _RAY_OOM):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class OutOfMemory(HpoError):
    """Ray's memory monitor killed the workers running ``what`` (trials, finalists, the retrain): one line that says
    what to lower and how to go on (``again``); Ray's memory report only with --debug."""

    def __init__(self, what: str, again: str = "rerun the same command: it continues from the checkpoints"):
        self.what = what
        super().__init__(
            f"{what}: the node ran out of memory and Ray's memory monitor killed the workers; lower budget.max_concurrent, "
            f"training.batch_size or training.max_length (or free memory on the node), then {again}"
        )

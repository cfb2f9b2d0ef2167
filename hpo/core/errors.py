"""The service's errors and the exit code each kind maps to. The root, ``HpoError``, and the errors of
what runs inside a trial (``DataError``, ``ModelError``) live in ``trainables.errors``, the lower layer."""

from __future__ import annotations

from trainables.errors import DataError, HpoError, ModelError

__all__ = [
    "DataError", "ExperimentError", "GateError", "HpoError", "Interrupted", "ModelError", "PromotionError", "SpecError",
    "StorageError", "UsageError",
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


class ExperimentError(HpoError):
    """An experiment directory is missing, unreadable, or holds no usable trial."""


class PromotionError(HpoError):
    """Promotion could not finish: retrain, publish or verification failed."""


class GateError(PromotionError):
    """The retrained model failed a quality gate; nothing was published."""

    exit_code = 3


class StorageError(HpoError):
    """The sweep's storage cannot be used: a bad URI, a missing bucket, no access, an endpoint that is down.
    Found before any data is loaded or Ray is started."""

    exit_code = 2

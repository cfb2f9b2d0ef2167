"""The one exception root, and the errors of what runs inside a trial (its data and its model).

``hpo.core.errors`` re-exports these and adds the service's own (spec, storage, promotion...): every error
raised on purpose is an ``HpoError``, which the CLI turns into one message and an exit code.
"""

from __future__ import annotations

import reprlib


class HpoError(Exception):
    """Root of every error the service raises on purpose. The CLI turns it into one message."""

    exit_code = 1


class DataError(HpoError):
    """The data cannot be used: missing column, one class, empty texts, unreadable file, skew."""

    exit_code = 2


class ModelError(HpoError):
    """The base model cannot be used: not found, not loadable as a classifier, or of a family the
    trainables have no adapter for. Found before any trial starts."""

    exit_code = 2


# A value shown in a message is cut short: a YAML alias can make a small file hold a huge value, and a data
# column named by mistake holds a whole dataset.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 2, 4, 4, 4, 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 80, 80, 40
SHOWN_MAX = 300  # characters of one value in a message, at most


def shown(value: object) -> str:
    """``repr(value)`` for a message: nested containers and long strings elided, at most ``SHOWN_MAX`` characters."""
    text = _SHORT.repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 3] + "..."


class TrialFailed(HpoError):
    """Why a trial cannot go on with its configuration: its loss diverged, or it ran out of GPU memory.

    Never raised out of a trial: the trial ends normally with this message as its failure reason (its last
    ``RoundReport``), which ``hpo status``, the searcher (a FAIL for TPE) and W&B show. Retrying the same
    configuration would fail the same way, and Tune retries a trial that raises."""

    @classmethod
    def diverged(cls, loss: float, round: int) -> TrialFailed:
        return cls(f"diverged: training loss {loss} in round {round}")

    @classmethod
    def out_of_memory(cls, batch_size: int, max_length: int, gpu_share: float) -> TrialFailed:
        """``gpu_share``: the trial's ``resources.gpu``; below 1 the trials sharing its GPU use memory too."""
        hint = "lower training.batch_size or training.max_length (or their ranges in search_space)"
        if 0 < gpu_share < 1:
            hint += f"; it shares its GPU with {round(1 / gpu_share) - 1} other trial(s) (resources.gpu {gpu_share:g}): a larger share leaves it more"
        return cls(f"out of GPU memory at batch_size {batch_size}, max_length {max_length}: {hint}")

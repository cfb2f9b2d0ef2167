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

"""The one exception root, and the errors of what runs inside a trial (its data and its model).

``hpo.core.errors`` re-exports these and adds the service's own (spec, storage, promotion...): every error
raised on purpose is an ``HpoError``, which the CLI turns into one message and an exit code.
"""

from __future__ import annotations


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

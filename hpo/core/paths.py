"""Local paths as a user types them: ``~`` and ``~user`` expanded, symbolic links resolved, and what cannot be
used said in words (an unknown user, a symbolic-link loop, a folder or a FIFO where a file is wanted).

Each function raises ``ValueError`` whose message is the reason alone; the caller names the key or flag and
the value. Only the standard library: the spec imports this.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

def is_uri(text: str) -> bool:
    """Whether ``text`` names a place by URI (``s3://``, ``gs://``, ``file://``...) rather than a local path; the
    one test of it in hpo ("C:" is a drive, not a scheme)."""
    return "://" in text and len(urlsplit(text).scheme) > 1


_LOOP = "a symbolic link loop (a link that leads back to itself)"


def local_path(text: str) -> Path:
    """``text`` as an absolute path, ``~``/``~user`` expanded and symbolic links resolved; what does not exist
    yet may stay missing."""
    expanded = os.path.expanduser(text)
    if text.startswith("~") and expanded == text:  # left as typed: no such user, or no home folder
        user = text[1:].split("/", 1)[0]
        raise ValueError(f"no user {user!r} on this machine (~{user} is that user's home folder)" if user else "no home folder to expand ~ to (HOME is not set)")
    try:
        return Path(expanded).resolve()
    except RuntimeError:  # Python before 3.13 on a loop
        raise ValueError(_LOOP) from None
    except OSError as err:
        raise ValueError(_LOOP if err.errno == errno.ELOOP else f"cannot be resolved: {err.strerror or err}") from None


def kind(path: Path) -> str | None:
    """What is at ``path`` (following links): None when nothing, else ``file``, ``folder``, or another kind."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise ValueError(_LOOP if err.errno == errno.ELOOP else f"cannot be read: {err.strerror or err}") from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device", stat.S_IFBLK: "device"}.get(stat.S_IFMT(mode), "special file")


def regular_file(text: str) -> Path:
    """An existing regular file (reading a FIFO or a device would wait or never end)."""
    path = local_path(text)
    found = kind(path)
    if found is None:
        raise ValueError("no such file")
    if found == "folder":
        raise ValueError("a folder, not a file")
    if found != "file":
        raise ValueError(f"not a regular file (a {found}); give a file")
    return path


def folder_or_nothing(text: str) -> Path:
    """A folder that exists, or a path where nothing is yet (a folder to create)."""
    path = local_path(text)
    found = kind(path)
    if found not in (None, "folder"):
        raise ValueError(f"a {found} is there, not a folder")
    return path

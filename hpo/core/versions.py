"""What code produced a result: installed package versions and the repository's git state. Read by the
model card's provenance and by the benchmarks' result files."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Python's version and each installed package's (packages that are not installed are left out)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, str | bool | None]:
    """The commit the code is at, and whether tracked files differ from it (None: not a git checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": _git("rev-parse", "HEAD") or None, "dirty": None if status is None else bool(status)}

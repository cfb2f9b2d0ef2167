"""Where a sweep's own files live next to Ray Tune's: ``STORAGE/NAME/hpo/``.

Paths may be local folders or URIs Ray accepts (``s3://``, ``gs://``); both go through pyarrow's
filesystem layer, the same one Ray Tune uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

META_DIR = "hpo"
SPEC_FILE = "spec.yaml"
DATA_FILE = "data.json"
JOURNAL_FILE = "optuna.journal"  # the Optuna study behind the TPE searcher


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _fs(path: str) -> tuple[Any, str]:
    import pyarrow.fs

    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), str(Path(path).resolve())


def write_text(path: str, text: str) -> None:
    fs, p = _fs(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(p) as f:
        f.write(text.encode())


def read_text(path: str) -> str:
    fs, p = _fs(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode()


def exists(path: str) -> bool:
    import pyarrow.fs

    fs, p = _fs(path)
    return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str) -> Any:
    return json.loads(read_text(path))

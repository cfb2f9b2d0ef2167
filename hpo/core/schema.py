"""The sweep spec's JSON Schema, from the same pydantic models that validate a spec (``hpo schema``).

Editors use it to check and complete a spec while it is typed: the shipped specs name
``search_spaces/sweep-spec.schema.json`` in their first line (``# yaml-language-server: $schema=...``), which
the YAML language server (VS Code's redhat.vscode-yaml) and JetBrains IDEs read. It rejects what ``hpo sweep``
rejects for structure (unknown keys, wrong types, out-of-range values, a model or data section naming none or
two sources); rules across sections (``mode`` against ``metric``, ``max_concurrent`` against ``num_trials``)
are left to ``hpo sweep``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpo.core.errors import UsageError
from hpo.core.paths import local_path
from hpo.core.spec import SweepSpec
from trainables.errors import shown

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a sweep spec; every model that forbids unknown keys has ``additionalProperties: false``."""
    return {"$schema": DIALECT, **SweepSpec.model_json_schema()}


def schema_text() -> str:
    """The schema as the file ``hpo schema -o`` writes and ``search_spaces/sweep-spec.schema.json`` holds."""
    return json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: str) -> None:
    """Write the schema to ``path``: a new file, or one that holds an earlier sweep-spec schema (never another
    file the user did not mean to replace)."""
    try:
        target = local_path(path)
    except ValueError as err:
        raise UsageError(f"-o {shown(path)}: {err}") from None
    if target.is_dir():
        raise UsageError(f"-o {shown(path)}: a folder; give the schema file's name, e.g. {target / 'sweep-spec.schema.json'}")
    if not target.parent.is_dir():
        raise UsageError(f"-o {path}: no such folder {str(target.parent)!r}")
    if target.exists() and not _is_spec_schema(target):
        raise UsageError(f"-o {path}: the file exists and is not a sweep-spec schema; remove it or choose another path")
    try:
        target.write_text(schema_text())
    except OSError as err:
        raise UsageError(f"-o {path}: cannot write there ({err.strerror or err})") from None


def _is_spec_schema(path: Path) -> bool:
    try:
        existing = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(existing, dict) and existing.get("title") == SweepSpec.__name__ and "$defs" in existing

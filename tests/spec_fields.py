"""Every key a sweep spec accepts, found by walking the pydantic models: the checks that each has a description
(tests/test_spec.py) and that the documentation lists each (tests/test_docs.py) read this one walk."""

from __future__ import annotations

import typing

import pydantic
from pydantic.fields import FieldInfo


def spec_fields() -> list[tuple[str, FieldInfo]]:
    """(YAML path, field) for every key of ``SweepSpec`` and the models below it. A list item's keys are under
    ``path[]``, a mapping value's (a searched parameter) under ``path.NAME``; the members of a union share a path."""
    from hpo.core.spec import SweepSpec

    out: list[tuple[str, FieldInfo]] = []
    seen: set[tuple[type, str]] = set()

    def walk(model: type, prefix: str) -> None:
        if (model, prefix) in seen:
            return
        seen.add((model, prefix))
        for name, field in model.model_fields.items():
            out.append((prefix + name, field))
            for inner, path in _models_in(field.annotation, prefix + name):
                walk(inner, path + ".")

    walk(SweepSpec, "")
    return out


def _models_in(annotation: object, path: str) -> list[tuple[type, str]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [(annotation, path)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return _models_in(args[0], path + "[]")
    if origin is dict:
        return _models_in(args[1], path + ".NAME")
    return [found for arg in args for found in _models_in(arg, path)]

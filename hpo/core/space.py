"""Search-space translation: the spec's parameters to Optuna distributions (one place)."""

from __future__ import annotations

from typing import Any

from hpo.core.spec import Choice, IntRange, LogUniform, Param, Uniform


def to_optuna(space: dict[str, Param]) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, LogUniform):
            out[name] = FloatDistribution(p.low, p.high, log=True)
        elif isinstance(p, Uniform):
            out[name] = FloatDistribution(p.low, p.high)
        elif isinstance(p, IntRange):
            out[name] = IntDistribution(p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, Choice):
            out[name] = CategoricalDistribution(list(p.values))
        else:  # pragma: no cover - the spec's discriminated union admits nothing else
            raise TypeError(f"unknown parameter type {type(p).__name__}")
    return out


def describe(space: dict[str, Param]) -> dict[str, str]:
    """Human-readable form of each parameter (for the CLI and the model card)."""
    out = {}
    for name, p in space.items():
        if isinstance(p, Choice):
            out[name] = "choice " + ", ".join(map(str, p.values))
        elif isinstance(p, IntRange):
            out[name] = f"int {p.low}..{p.high}" + (f" step {p.step}" if p.step != 1 else "") + (" (log)" if p.log else "")
        else:
            out[name] = f"{p.type} {p.low:g}..{p.high:g}"
    return out


def _kind(value: Any) -> str:
    """Numbers are one kind (a choice may hold 1 and 1e-5); booleans, strings and the rest are their own."""
    return "number" if type(value) in (int, float) else type(value).__name__


def in_space(param: Param, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` is one ``param`` can take (within a range, an int range's on its steps; one of a choice's
    values, of the same kind: ``true`` is not ``1``), and the value as the parameter holds it (``16.0`` of an int
    range is ``16``; a choice's own value)."""
    if isinstance(param, Choice):
        same = [v for v in param.values if _kind(v) == _kind(value) and v == value]
        return (True, same[0]) if same else (False, value)
    if _kind(value) != "number":
        return False, value
    if isinstance(param, IntRange):
        ok = float(value).is_integer() and param.low <= value <= param.high and (int(value) - param.low) % param.step == 0
        return ok, int(value) if ok else value
    return param.low <= value <= param.high, float(value)

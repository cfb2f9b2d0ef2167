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

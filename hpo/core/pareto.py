"""The Pareto front of a multi-objective sweep: the trials no other trial beats on every objective at once.

Pure functions over plain values (standard library only): ``hpo status``, the W&B summary run and promotion's
refusal when no trial meets the latency gate all read the front from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

Key = TypeVar("Key")  # what names a point: a trial, its id


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` on every objective and better on one (``modes``: "max" or "min" each)."""
    better = False
    for x, y, mode in zip(a, b, modes, strict=True):
        if x == y:
            continue
        if (x > y) != (mode == "max"):
            return False
        better = True
    return better


def pareto_front(points: Sequence[tuple[Key, Sequence[float]]], modes: Sequence[str]) -> list[tuple[Key, tuple[float, ...]]]:
    """The points (key, values) that no other point dominates, best first by the first objective (then the
    second...; equal values in the order given). Points with equal values are all on the front or all off it."""
    for key, values in points:
        if len(values) != len(modes):
            raise ValueError(f"{key!r}: {len(values)} values for {len(modes)} objectives")
    front = [(key, tuple(values)) for key, values in points if not any(dominates(other, values, modes) for _, other in points)]

    def order(point: tuple[Key, tuple[float, ...]]) -> tuple[float, ...]:
        return tuple(-v if mode == "max" else v for v, mode in zip(point[1], modes))

    return sorted(front, key=order)  # sorted() is stable: equal values keep their order

"""Hyperparameter sweeps for transformer text classifiers on Ray Tune, tracked in W&B, promoted to the Hub.

The public surface is small: load a spec, run (or resume) a sweep, read it back, promote its winner::

    import hpo

    spec = hpo.load_spec("search_spaces/quickstart.yaml", {"name": "from-python"})
    outcome = hpo.run_sweep(spec, wandb_mode="offline")
    sweep = hpo.load_sweep(outcome.path)
    trial, value, round_ = sweep.winner()
    hpo.promote(outcome.path, hpo.PromoteOptions(dry_run_dir="promoted/from-python"))

Heavy libraries (torch, ray, transformers) are imported only when a function needs them: importing
``hpo`` loads the spec and the errors, nothing more.
"""

from __future__ import annotations

from typing import Any

from hpo.core.errors import HpoError, SpecError
from hpo.core.spec import SweepSpec, load_spec

# name -> module it lives in, imported on first use
_LAZY = {
    "run_sweep": "hpo.sweep.driver",
    "resume_sweep": "hpo.sweep.driver",
    "SweepOutcome": "hpo.sweep.driver",
    "load_sweep": "hpo.core.results",
    "Sweep": "hpo.core.results",
    "promote": "hpo.promotion.promote",
    "PromoteOptions": "hpo.promotion.promote",
    "PromotionResult": "hpo.promotion.promote",
}

__all__ = ["HpoError", "SpecError", "SweepSpec", "load_spec", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

"""Hyperparameter sweeps for transformer text classifiers on Ray Tune, tracked in W&B, promoted to the Hub.

The public surface is small: load a spec, run a sweep, read it back, promote its winner. Heavy
libraries (torch, ray, transformers) are imported only when a function needs them.
"""

from hpo.errors import HpoError, SpecError
from hpo.spec import SweepSpec, load_spec

__all__ = ["HpoError", "SpecError", "SweepSpec", "load_spec"]

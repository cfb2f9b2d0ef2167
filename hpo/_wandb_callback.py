"""Ray Tune's W&B callback with a quiet finalizer, kept in a module of its own so it is imported only
when tracking is on (and so Tune can pickle it by reference into the experiment state)."""

from __future__ import annotations

from ray.air.integrations.wandb import WandbLoggerCallback


class SweepWandbCallback(WandbLoggerCallback):
    """The stock finalizer touches the ``ray`` module after Python has torn it down at exit and
    prints a traceback; this one tolerates interpreter shutdown."""

    def __del__(self):
        try:
            super().__del__()
        except Exception:  # interpreter shutdown: nothing left to clean up
            pass

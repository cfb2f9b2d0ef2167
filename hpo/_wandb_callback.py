"""Ray Tune's W&B callback with two fixes, kept in a module of its own so it is imported only when
tracking is on (and so Tune can pickle it by reference into the experiment state)."""

from __future__ import annotations

from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor


class _FlushingLoggingActor(_WandbLoggingActor):
    """The stock actor returns right after ``wandb.finish()``, and Tune then kills it; W&B's writer
    process dies with it, which cut the last records of the runs that ended last (seen offline: a run
    file left with its header only). ``wandb.teardown()`` waits for the writer to finish."""

    def run(self):
        super().run()
        self._wandb.teardown()


class SweepWandbCallback(WandbLoggerCallback):
    """Flushes every run before its logger is stopped, and has a finalizer that tolerates interpreter
    shutdown (the stock one touches the ``ray`` module after Python has torn it down)."""

    _logger_actor_cls = _FlushingLoggingActor

    def __del__(self):
        try:
            super().__del__()
        except Exception:  # interpreter shutdown: nothing left to clean up
            pass

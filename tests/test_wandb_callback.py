"""The W&B callback hands results to each trial's logger without holding Tune's loop."""

from __future__ import annotations

import threading

import pytest

ray = pytest.importorskip("ray")


@pytest.fixture()
def local_ray():
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()  # stops the processes this init started


def test_a_result_is_never_waited_on_and_results_reach_the_logger_in_order(local_ray):
    from ray.air.integrations.wandb import _QueueItem
    from ray.util.queue import Queue

    from hpo._wandb_callback import SweepWandbCallback

    cb = SweepWandbCallback(project="hpo-tests", upload_timeout=30)
    # A queue actor that can never start (it asks for a resource no node has): the stock callback's
    # blocking put would hang Tune's loop here for good.
    cb._trial_queues["stuck"] = Queue(actor_options={"num_cpus": 0, "resources": {"no-such-node": 1}})
    cb._trial_queues["live"] = Queue(actor_options={"num_cpus": 0})
    items = [(_QueueItem.RESULT, {"round": i}) for i in (1, 2, 3)] + [(_QueueItem.END, None)]

    def send_all():
        for trial in ("stuck", "live"):
            for item in items:
                cb._send(trial, item)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    sender.join(timeout=60)
    assert not sender.is_alive(), "sending a result waited for a queue actor"
    # one put at a time goes to the actor; the rest wait in the driver, in order
    assert cb._unsent["stuck"] == items[1:]

    for _ in items:  # what Tune's loop does at every step, and the end of the experiment
        cb._flush("live", wait=60)
        cb._flush("stuck", wait=0.1)
    ray.get(cb._in_flight["live"])
    assert cb._trial_queues["live"].get_nowait_batch(len(items)) == items
    assert cb._unsent["live"] == [] and cb._unsent["stuck"] == items[1:]

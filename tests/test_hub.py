"""Publishing to the Hub: transient failures are asked again, a bounded number of times, and said."""

from __future__ import annotations


def test_hub_calls_are_retried_on_transient_failures_only():
    import pytest

    from hpo.promotion.hub import with_retries

    class Answer(Exception):
        def __init__(self, status):
            super().__init__(f"{status} from the Hub")
            self.response = type("R", (), {"status_code": status})()

    said, waited, calls = [], [], []

    def flaky(failures):
        def call():
            calls.append(1)
            if len(calls) <= len(failures):
                raise failures[len(calls) - 1]
            return "done"

        return call

    assert with_retries(flaky([Answer(503), ConnectionResetError("reset")]), "the commit", said.append, sleep=waited.append) == "done"
    assert waited == [1.0, 2.0] and len(said) == 2 and "(attempt 3 of 4)" in said[1]
    calls.clear()
    with pytest.raises(Answer):  # a 4xx is the caller's to handle, at once
        with_retries(flaky([Answer(403)]), "the commit", said.append, sleep=waited.append)
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(Answer):  # bounded: the fourth 503 is raised
        with_retries(flaky([Answer(503)] * 4), "the commit", said.append, sleep=waited.append)
    assert len(calls) == 4

"""Episodes run in waves for lockstep batching, in a sliding window for server-batched policies."""

import threading

from daggerlm.agent.runner import run_in_waves
from daggerlm.policies.batching import LockstepBatcher


class _Policy:
    identity = "fake"

    def __init__(self, server_batched: bool):
        self.server_batched = server_batched

    def complete(self, requests):
        raise AssertionError("not called")


def _first_item_sees_the_last_start(server_batched: bool) -> bool:
    """Item 0 waits for item 3 to start; with 2 slots that happens only if the window slides."""
    last_started = threading.Event()

    def episode(i: int) -> bool:
        if i == 3:
            last_started.set()
        return last_started.wait(2.0) if i == 0 else True

    return run_in_waves(list(range(4)), episode, 2, [LockstepBatcher(_Policy(server_batched))])[0]


def test_server_batched_policies_slide_and_lockstep_ones_wait_for_their_wave():
    assert _first_item_sees_the_last_start(server_batched=True)
    assert not _first_item_sees_the_last_start(server_batched=False)

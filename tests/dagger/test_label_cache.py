"""The label cache under concurrency: slow teacher calls overlap, a state asked twice at once costs one call."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from daggerlm.dagger.label_cache import CachedTeacher, LabelCache
from daggerlm.instances.synthetic import generate
from daggerlm.policies.base import Completion, PolicyRequest


class SlowTeacher:
    """Answers after `delay` seconds; records every state it was asked for."""

    identity = "slow/v1"

    def __init__(self, delay: float, fail: bool = False):
        self.delay, self.fail = delay, fail
        self.asked: list[str] = []
        self._lock = threading.Lock()

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        with self._lock:
            self.asked += [r.instance.instance_id for r in requests]
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("teacher unreachable")
        return [Completion(f"label for {r.instance.instance_id}", {"policy": self.identity}) for r in requests]


def _requests(n):
    return [PolicyRequest(inst, [{"role": "user", "content": "fix it"}], {"head": "h", "diff": ""})
            for inst in generate(n, "train", seed=4)]


def test_distinct_states_are_asked_concurrently_and_repeats_once(tmp_path):
    teacher = SlowTeacher(0.5)
    cached = CachedTeacher(teacher, LabelCache(tmp_path))
    requests = _requests(4)
    asks = [[r] for r in requests] * 2  # every state asked twice, all at once
    start = time.monotonic()
    with ThreadPoolExecutor(len(asks)) as pool:
        answers = list(pool.map(cached.complete, asks))
    elapsed = time.monotonic() - start
    assert sorted(teacher.asked) == sorted(r.instance.instance_id for r in requests)  # one call per state
    assert elapsed < 1.5, f"teacher calls were serialised: {elapsed:.2f} s for 4 overlapping 0.5 s calls"
    assert [a[0].text for a in answers[:4]] == [a[0].text for a in answers[4:]]
    assert sorted(a[0].meta["cache"] for a in answers) == ["hit"] * 4 + ["miss"] * 4
    assert (cached.calls, cached.hits) == (4, 4)
    again = cached.complete(requests)  # from disk now
    assert [c.meta["cache"] for c in again] == ["hit"] * 4 and len(teacher.asked) == 4


def test_a_failed_teacher_call_reaches_every_waiter_and_is_not_cached(tmp_path):
    cached = CachedTeacher(SlowTeacher(0.3, fail=True), LabelCache(tmp_path))
    request = _requests(1)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(cached.complete, request) for _ in range(2)]
        for f in futures:
            with pytest.raises(ConnectionError):
                f.result()
    cached.teacher = SlowTeacher(0.0)
    assert cached.complete(request)[0].meta["cache"] == "miss"  # the failure was not stored

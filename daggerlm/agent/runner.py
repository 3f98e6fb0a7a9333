"""Run many episodes concurrently, in waves, so batched policies see deterministic batches.

A wave is `concurrency` episodes, one thread each; the policies' lockstep batchers turn their
requests into one batched call per turn. Waves start in input order, so which episodes share a
batch does not depend on timing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from daggerlm.policies.batching import LockstepBatcher

T = TypeVar("T")
R = TypeVar("R")


def run_in_waves(items: Sequence[T], episode: Callable[[T], R], concurrency: int,
                 batchers: Sequence[LockstepBatcher] = (), on_done: Callable[[T, R], None] | None = None) -> list[R]:
    results: list[R] = []

    def one(item: T) -> R:
        try:
            return episode(item)
        finally:
            for b in batchers:
                b.finish()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for start in range(0, len(items), concurrency):
            wave = items[start:start + concurrency]
            for b in batchers:
                b.register(len(wave))
            for item, result in zip(wave, pool.map(one, wave)):
                results.append(result)
                if on_done:
                    on_done(item, result)
    return results

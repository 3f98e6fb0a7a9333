"""Run many episodes concurrently, in waves, so batched policies see deterministic batches.

A wave is `concurrency` episodes, one thread each; the policies' lockstep batchers turn their
requests into one batched call per turn. Waves start in input order, so which episodes share a
batch does not depend on timing. Policies served with their own batching need no waves: a window of
`concurrency` episodes slides over the items.

An `ItemRunner` runs a stage's items (episodes, trajectories to label) at most once per key:
`LocalRunner` keeps each result as a JSON file; the Prefect runner (`tasks/episodes.py`) makes
each item a cached Prefect task. Either way an interrupted stage resumes where it stopped. An item
that raises `InfrastructureError` (its policy unreachable) is reported as failed and never kept,
so the next run retries it; `check_failures` fails the stage when too many did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from daggerlm.errors import InfrastructureError
from daggerlm.io import ResultStore
from daggerlm.policies.batching import LockstepBatcher

T = TypeVar("T")
R = TypeVar("R")


def progress_bar(label: str) -> Progress:
    """A stage's bar over its items (rich), with a free-text field `info`."""
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"))


def wave_size(batchers: Sequence[LockstepBatcher], concurrency: int, n_items: int) -> int:
    """Waves keep lockstep batches deterministic; when every policy's server batches by itself, one
    window of `concurrency` episodes slides over all items instead (no waiting for a wave's slowest)."""
    lockstep = any(not b.server_batched for b in batchers)
    return max(1, concurrency if lockstep else n_items)


def run_in_waves(items: Sequence[T], episode: Callable[[T], R], concurrency: int,
                 batchers: Sequence[LockstepBatcher] = (), on_done: Callable[[T, R], None] | None = None) -> list[R]:
    results: list[R] = []

    def one(item: T) -> R:
        try:
            return episode(item)
        finally:
            for b in batchers:
                b.finish()

    size = wave_size(batchers, concurrency, len(items))
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for start in range(0, len(items), size):
            wave = items[start:start + size]
            for b in batchers:
                b.register(len(wave))
            for item, result in zip(wave, pool.map(one, wave)):
                results.append(result)
                if on_done:
                    on_done(item, result)
    return results


@dataclass
class Failed:
    """An item that could not finish for a reason outside the agent (kept nowhere)."""

    error: str


@dataclass
class Outcome:
    results: list[dict]
    """One JSON-able result per finished item, in input order."""
    reused: int
    """How many were made before (an earlier, interrupted run) and not recomputed."""
    failed: dict[str, str]
    """Items that failed for infrastructure reasons: name -> error."""


def guarded(work: Callable[[T], dict]) -> Callable[[T], dict | Failed]:
    """`work`, with an infrastructure failure returned as `Failed` instead of raised."""

    def run(item: T) -> dict | Failed:
        try:
            return work(item)
        except InfrastructureError as e:
            return Failed(str(e))

    return run


def check_failures(stage: str, outcome: Outcome, total: int, max_share: float) -> None:
    """Fail the stage when more than `max_share` of its items failed for infrastructure reasons, so
    that outages never become results (a resolve rate that counts them as the agent's failures)."""
    if total and len(outcome.failed) / total > max_share:
        name, error = next(iter(outcome.failed.items()))
        raise InfrastructureError(
            f"{stage}: {len(outcome.failed)} of {total} items failed outside the agent (more than "
            f"dagger.max_failed_share={max_share:g}), e.g. {name}: {error}. Rerun the stage: finished items are "
            "kept, failed ones are retried.")


class ItemRunner(Protocol):
    def __call__(self, items: Sequence[T], names: Sequence[str], keys: Sequence[str], work: Callable[[T], dict], *,
                 concurrency: int, batchers: Sequence[LockstepBatcher] = (),
                 on_done: Callable[[dict], None] | None = None) -> Outcome:
        """Run `work` on every item whose key has no result yet; `on_done` sees every result as it is ready."""
        ...


class LocalRunner:
    """Results kept as `<root>/<name>.json`, tagged with their key (nothing kept when root is None)."""

    def __init__(self, root: str | Path | None):
        self.store = ResultStore(root) if root is not None else None

    def __call__(self, items, names, keys, work, *, concurrency, batchers=(), on_done=None) -> Outcome:
        results: dict[int, dict] = {}
        for i, (name, key) in enumerate(zip(names, keys)):
            if self.store and (value := self.store.get(name, key)) is not None:
                results[i] = value
                if on_done:
                    on_done(value)
        reused = len(results)

        failed: dict[str, str] = {}

        def finished(i: int, value: dict | Failed) -> None:
            if isinstance(value, Failed):
                failed[names[i]] = value.error
                return
            if self.store:
                self.store.put(names[i], keys[i], value)
            results[i] = value
            if on_done:
                on_done(value)

        todo = [i for i in range(len(items)) if i not in results]
        run_in_waves(todo, guarded(lambda i: work(items[i])), concurrency, batchers, finished)
        return Outcome([results[i] for i in sorted(results)], reused, failed)

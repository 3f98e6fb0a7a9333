"""Lockstep batching: concurrent episodes advance together, one batched policy call per turn.

Each episode runs in its own thread and asks for one completion at a time; the batcher holds the
requests until every live episode is waiting, then sends them all in one call. The batch is ordered
by (instance, history length), so its composition does not depend on thread timing. A policy whose
server batches requests itself (`server_batched`, e.g. vLLM or `transformers serve` with continuous
batching) gets each request as soon as it is made: while one episode waits for the model, the
others run their commands.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from daggerlm.io import ProcessLocal
from daggerlm.policies.base import Completion, Policy, PolicyRequest


class LockstepBatcher(ProcessLocal):
    _process_local = ("_cond", "_live", "_pending", "_in_flight", "batch_sizes")

    def __init__(self, policy: Policy, max_batch: int = 64):
        self.policy, self.max_batch = policy, max_batch
        self.identity = policy.identity
        self._fresh()

    def _fresh(self) -> None:
        """Waiters and batches are this process's: in another, only a server-batched policy makes sense."""
        self._cond = threading.Condition()
        self._live = 0
        self._pending: list[tuple[PolicyRequest, dict]] = []
        self._in_flight = 0
        self.batch_sizes: list[int] = []

    def register(self, n: int = 1) -> None:
        """Announce `n` live episodes (before any of them starts, so the first batch waits for all)."""
        with self._cond:
            self._live += n

    def finish(self) -> None:
        """One live episode ended: the others no longer wait for it."""
        with self._cond:
            self._live -= 1
        self._flush_if_ready()

    @contextmanager
    def episode(self) -> Iterator[None]:
        """Register one live episode for the duration of the block."""
        self.register()
        try:
            yield
        finally:
            self.finish()

    @property
    def server_batched(self) -> bool:
        return bool(getattr(self.policy, "server_batched", False))

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        if self.server_batched:  # the server batches: send at once, wait for nobody
            with self._cond:
                self.batch_sizes.append(len(requests))
            return self.policy.complete(requests)
        slots = [{} for _ in requests]
        with self._cond:
            self._pending.extend(zip(requests, slots))
        self._flush_if_ready()
        with self._cond:
            while any("out" not in s for s in slots):
                self._cond.wait()
        for s in slots:
            if isinstance(s["out"], BaseException):
                raise s["out"]
        return [s["out"] for s in slots]

    def _flush_if_ready(self) -> None:
        with self._cond:
            waiting = len(self._pending) + self._in_flight
            ready = self._pending and (waiting >= max(self._live, 1) or len(self._pending) >= self.max_batch)
            if not ready:
                return
            batch = sorted(self._pending, key=lambda item: (item[0].instance.instance_id, len(item[0].messages)))
            batch = batch[: self.max_batch]
            taken = {id(slot) for _, slot in batch}
            self._pending = [item for item in self._pending if id(item[1]) not in taken]
            self._in_flight += len(batch)
        try:
            outs: list = self.policy.complete([r for r, _ in batch])
        except BaseException as e:  # every waiter sees the failure
            outs = [e] * len(batch)
        with self._cond:
            self._in_flight -= len(batch)
            self.batch_sizes.append(len(batch))
            for (_, slot), out in zip(batch, outs):
                slot["out"] = out
            self._cond.notify_all()

"""Content-addressed teacher labels, shared by rollout, labeling and every iteration.

Key = hash(state hash, teacher identity): the identity names the teacher and its sampling
parameters. A served teacher's scores of the sequences training sees are kept here too
(`dagger.teacher_scores`). One JSON file per key (written atomically), so concurrent stages and crashed runs
never see a partial entry.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from pathlib import Path

from daggerlm.io import ProcessLocal, atomic_write_json, stable_hash
from daggerlm.policies.base import Completion, Policy, PolicyRequest


def state_hash(request: PolicyRequest) -> str:
    """Identity of a visited state: instance, linear history and environment snapshot."""
    return stable_hash({"instance": request.instance.instance_id, "base": request.instance.base_commit,
                        "messages": [(m["role"], m["content"]) for m in request.messages],
                        "snapshot": {k: request.snapshot.get(k, "") for k in ("head", "diff")}}, length=32)


class LabelCache:
    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()  # as seen from here: a Dask worker runs elsewhere, in another directory

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def read(self, key: str) -> dict | None:
        path = self._path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def write(self, key: str, entry: dict) -> None:
        atomic_write_json(self._path(key), entry)

    def get(self, key: str) -> Completion | None:
        data = self.read(key)
        return None if data is None else Completion(data["text"], data.get("meta", {}))

    def put(self, key: str, completion: Completion) -> None:
        self.write(key, {"text": completion.text, "meta": completion.meta})


class CachedTeacher(ProcessLocal):
    """A teacher policy behind the label cache; counts calls and hits.

    Thread-safe without holding a lock during teacher calls (a slow HTTP teacher serves many
    episodes at once); a state asked for twice at once is sent to the teacher only once, the
    second asker waits for the first one's answer.
    """

    _process_local = ("calls", "hits", "_lock", "_in_flight")

    def __init__(self, teacher: Policy, cache: LabelCache):
        self.teacher, self.cache = teacher, cache
        self.identity = teacher.identity
        self._fresh()

    def _fresh(self) -> None:
        self.calls = self.hits = 0
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future] = {}

    def key(self, request: PolicyRequest) -> str:
        return stable_hash({"state": state_hash(request), "teacher": self.identity}, length=32)

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        """Labels for `requests`; each completion's meta says `cache: hit` or `cache: miss` (a teacher call)."""
        keys = [self.key(r) for r in requests]
        found: dict[str, Completion] = {}
        owned: dict[str, PolicyRequest] = {}
        waiting: dict[str, Future] = {}
        with self._lock:
            for k, r in zip(keys, requests):
                if k in found or k in owned or k in waiting:
                    continue
                if k in self._in_flight:
                    waiting[k] = self._in_flight[k]
                elif (hit := self.cache.get(k)) is not None:
                    found[k] = hit
                else:
                    owned[k], self._in_flight[k] = r, Future()
            self.calls += len(owned)
            self.hits += len(keys) - len(owned)
        if owned:
            found.update(self._ask_teacher(owned))
        for k, future in waiting.items():
            found[k] = future.result()
        out, first = [], set()
        for k in keys:
            miss = k in owned and k not in first
            first.add(k)
            out.append(Completion(found[k].text, {**found[k].meta, "cache": "miss" if miss else "hit"}))
        return out

    def _ask_teacher(self, owned: dict[str, PolicyRequest]) -> dict[str, Completion]:
        """Call the teacher for the states this caller owns; publish answers (or the error) to waiters."""
        futures = {k: self._in_flight[k] for k in owned}
        try:
            completions = dict(zip(owned, self.teacher.complete(list(owned.values()))))
            for k, c in completions.items():
                if not c.meta.get("error"):  # a failed request is recorded where it happened, never cached
                    self.cache.put(k, c)
                futures[k].set_result(c)
        except BaseException as e:
            for f in futures.values():
                if not f.done():
                    f.set_exception(e)
            raise
        finally:
            with self._lock:
                for k in owned:
                    self._in_flight.pop(k, None)
        return completions

"""Content-addressed teacher labels, shared by rollout, labeling and every iteration.

Key = hash(state hash, teacher identity): the identity names the teacher and its sampling
parameters. One JSON file per key (written atomically), so concurrent stages and crashed runs
never see a partial entry.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from daggerlm.io import atomic_write_json, stable_hash
from daggerlm.policies.base import Completion, Policy, PolicyRequest


def state_hash(request: PolicyRequest) -> str:
    """Identity of a visited state: instance, linear history and environment snapshot."""
    return stable_hash({"instance": request.instance.instance_id, "base": request.instance.base_commit,
                        "messages": [(m["role"], m["content"]) for m in request.messages],
                        "snapshot": {k: request.snapshot.get(k, "") for k in ("head", "diff")}}, length=32)


class LabelCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return Completion(data["text"], data.get("meta", {}))

    def put(self, key: str, completion: Completion) -> None:
        atomic_write_json(self._path(key), {"text": completion.text, "meta": completion.meta})


class CachedTeacher:
    """A teacher policy behind the label cache; counts calls and hits.

    Thread-safe, and a state asked for twice at once is sent to the teacher only once.
    """

    def __init__(self, teacher: Policy, cache: LabelCache):
        self.teacher, self.cache = teacher, cache
        self.identity = teacher.identity
        self.calls = self.hits = 0
        self._lock = threading.Lock()

    def key(self, request: PolicyRequest) -> str:
        return stable_hash({"state": state_hash(request), "teacher": self.identity}, length=32)

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        """Labels for `requests`; each completion's meta says `cache: hit` or `cache: miss` (a teacher call)."""
        keys = [self.key(r) for r in requests]
        found: dict[str, Completion] = {}
        with self._lock:
            for k in keys:
                if k not in found and (hit := self.cache.get(k)) is not None:
                    found[k] = hit
            missing = {k: r for k, r in zip(keys, requests) if k not in found}
            fresh = dict(zip(missing, self.teacher.complete(list(missing.values())))) if missing else {}
            for k, c in fresh.items():
                self.cache.put(k, c)
            self.calls += len(missing)
            self.hits += len(keys) - len(missing)
        out, called = [], set()
        for k in keys:
            if k in fresh and k not in called:
                called.add(k)
                c, source = fresh[k], "miss"
            else:
                c, source = found.get(k) or fresh[k], "hit"
            out.append(Completion(c.text, {**c.meta, "cache": source}))
        return out

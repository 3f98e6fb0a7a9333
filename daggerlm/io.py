"""Atomic file writes, content hashes, and YAML as users write it.

Every output is written to a temporary file beside its target and renamed into place, so a crash
never leaves a partial file that could be mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from daggerlm.errors import InputError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def turn_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (run seed, iteration, instance id, turn, ...)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


TIMINGS = "timings"
"""Wall-clock seconds: what differs between two runs of the same params. A `ResultStore` value's
`timings` entry is kept in `.timings/NAME.json`, trajectories' seconds in `timings.jsonl` beside them;
`.dvcignore` (`DVC_IGNORED`) leaves both out of what DVC hashes, so the outs of two runs agree."""
TIMINGS_FILE = "timings.jsonl"
DVC_IGNORED = (TIMINGS_FILE, ".timings/")


class ResultStore:
    """One JSON file per finished item, tagged with the key of what made it (its `TIMINGS` aside).

    A stage writes each item as soon as it is done; a re-run reuses items whose key matches and
    recomputes the rest, so an interrupted stage resumes where it stopped.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / f"{name.replace('/', '__')}.json"

    def get(self, name: str, key: str) -> Any | None:
        path = self.path(name)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return self._with_timings(path, data["value"]) if data.get("key") == key else None

    def put(self, name: str, key: str, value: Any) -> None:
        timings = value.get(TIMINGS) if isinstance(value, dict) else None
        if timings is not None:
            atomic_write_json(self._aside(self.path(name)), timings)
            value = {k: v for k, v in value.items() if k != TIMINGS}
        atomic_write_json(self.path(name), {"key": key, "value": value})

    def values(self) -> list[Any]:
        """Every stored item, whatever key made it (for reports over a finished stage), by name."""
        return [self._with_timings(path, json.loads(path.read_text())["value"]) for path in sorted(self.root.glob("*.json"))]

    @staticmethod
    def _aside(path: Path) -> Path:
        return path.parent / ".timings" / path.name

    def _with_timings(self, path: Path, value: Any) -> Any:
        aside = self._aside(path)
        return {**value, TIMINGS: json.loads(aside.read_text())} if aside.is_file() else value


def plain_python(value: Any) -> Any:
    """Parquet/pandas give numpy arrays for list columns; turn them (recursively) back into lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [plain_python(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_python(v) for k, v in value.items()}
    return value


class _Yaml12Floats(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `4e-4` is a string (1.1 floats need a dot); a learning rate
    written so would reach TRL as text. YAML 1.2 (which DVC's parser follows) reads it as a float."""


_Yaml12Floats.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, except that exponent floats without a dot (`4e-4`, `1E3`) are floats."""
    return yaml.load(text, Loader=_Yaml12Floats)  # noqa: S506 (a SafeLoader)


def parse_overrides(pairs: Iterable[str] | None) -> dict:
    """`--set section.key=value` pairs (YAML values) as {dotted key: value}, for `load_params`."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--set {pair!r}: expected section.key=value")
        out[key.strip()] = load_yaml(value)
    return out


class ProcessLocal:
    """An object whose episodes may run in another process (a Dask worker): the attributes named in
    `_process_local` (locks, HTTP clients, counters of this process) are left out when it is pickled
    and made anew there by `_fresh()`, which `__init__` calls too. Nothing secret travels: a client
    reads its API key from the environment of the process it is made in."""

    _process_local: tuple[str, ...] = ()

    def _fresh(self) -> None:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._process_local}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._fresh()

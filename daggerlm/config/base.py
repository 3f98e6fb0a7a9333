"""The base of every params section, and the recording of which params a stage reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel, ConfigDict

_READS: set[str] | None = None
"""While `record_reads` runs: the dotted params read, from any thread."""
_PATHS: dict[int, str] = {}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    def __getattribute__(self, name: str):
        value = super().__getattribute__(name)
        if _READS is not None and not name.startswith("_") and name in type(self).model_fields \
                and not isinstance(value, Section) and (path := _PATHS.get(id(self))) is not None:
            _READS.add(f"{path}{name}")
        return value

    def model_dump(self, *args, **kwargs):  # a whole section read at once (hashed, serialized)
        if _READS is not None and (path := _PATHS.get(id(self))):
            _READS.add(path.rstrip("."))
        return super().model_dump(*args, **kwargs)


@contextmanager
def record_reads(p: Section) -> Iterator[set[str]]:
    """Record the params read (dotted paths, e.g. `runtime.timeout_s`; a whole section when it is
    dumped) while the block runs: how the pipeline test checks each stage's declared reads."""
    global _READS

    def walk(section: Section, prefix: str) -> None:
        _PATHS[id(section)] = prefix
        for name in type(section).model_fields:
            value = object.__getattribute__(section, name)
            if isinstance(value, Section):
                walk(value, f"{prefix}{name}.")

    walk(p, "")
    _READS = reads = set()
    try:
        yield reads
    finally:
        _READS = None
        _PATHS.clear()



"""Load and validate instances from JSONL, parquet or a Hugging Face dataset name.

Every error is one line naming the file, the line (or row) and the field. A file names an
instance's `repo_snapshot` relative to itself, so an instances file and its snapshots can move
together to another directory or machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from daggerlm.errors import InputError
from daggerlm.instances.schema import Instance
from daggerlm.io import atomic_write_jsonl, plain_python

HUB_DATASETS = {"princeton-nlp/SWE-bench_Verified", "princeton-nlp/SWE-bench_Lite", "princeton-nlp/SWE-bench",
                "SWE-Gym/SWE-Gym", "SWE-bench/SWE-bench_Verified"}


def _first_error(where: str, err: ValidationError) -> InputError:
    e = err.errors()[0]
    field = ".".join(str(p) for p in e["loc"]) or "<record>"
    kind = "missing required field" if e["type"] == "missing" else e["msg"]
    return InputError(f"{where}: field '{field}': {kind}")


def parse_instance(record: object, where: str) -> Instance:
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    try:
        return Instance.model_validate(record)
    except ValidationError as err:
        raise _first_error(where, err) from None


def _check_unique(instances: list[Instance], source: str) -> list[Instance]:
    seen: set[str] = set()
    for inst in instances:
        if inst.instance_id in seen:
            raise InputError(f"{source}: duplicate instance_id '{inst.instance_id}'")
        seen.add(inst.instance_id)
    return instances


def load_jsonl(path: Path) -> list[Instance]:
    out = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            out.append(parse_instance(record, f"{path}:{lineno}"))
    return _check_unique(out, str(path))


def load_parquet(path: Path) -> list[Instance]:
    import pandas as pd

    frame = pd.read_parquet(path)
    records = frame.to_dict(orient="records")
    out = [parse_instance(plain_python(r), f"{path}: row {i}") for i, r in enumerate(records)]
    return _check_unique(out, str(path))


def _hub_rows(name: str, split: str) -> Iterable[dict]:
    """`split` of the hub dataset `name`. All its splits are loaded (the hub's `datasets` prepares them
    all anyway) so that a split it lacks (SWE-Gym has only `train`) is named, not a library trace."""
    try:
        import datasets

        splits = datasets.load_dataset(name)
    except Exception as e:  # offline, unknown name
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"dataset '{name}' (split '{split}'): cannot load from the hub or cache: {reason}") from None
    if split not in splits:
        raise InputError(f"dataset '{name}' has no split '{split}' (it has: {', '.join(splits)}); choose one with --split")
    return splits[split]


def load_hub(name: str, split: str = "test") -> list[Instance]:
    """A Hugging Face dataset by name; needs a reachable hub or a local datasets cache."""
    rows = _hub_rows(name, split)
    source = "swe-gym" if "gym" in name.lower() else "swebench"
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        r.setdefault("source", source)
        out.append(parse_instance(r, f"{name}[{split}]: row {i}"))
    return _check_unique(out, name)


def _load_instances(spec: str | Path, split: str = "test") -> list[Instance]:
    """Load instances from a `.jsonl`/`.json` file, a `.parquet` file, or a hub dataset name."""
    path = Path(spec)
    if path.suffix in {".jsonl", ".json"}:
        if not path.is_file():
            raise InputError(f"{path}: instances file not found")
        return load_jsonl(path)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise InputError(f"{path}: instances file not found")
        return load_parquet(path)
    if path.exists():
        raise InputError(f"{path}: unsupported instances file; expected .jsonl, .json or .parquet")
    if str(spec).count("/") == 1:
        return load_hub(str(spec), split)
    raise InputError(f"{spec}: not a file and not a dataset name (expected owner/name, e.g. {sorted(HUB_DATASETS)[0]})")


def load_instances(spec: str | Path, split: str = "test") -> list[Instance]:
    """Instances from a JSONL or parquet file or a hub dataset; snapshots resolved against the file."""
    items = _load_instances(spec, split)
    base = Path(spec).parent
    return [i.model_copy(update={"repo_snapshot": str((base / i.repo_snapshot).resolve())})
            if i.repo_snapshot and not Path(i.repo_snapshot).is_absolute() else i for i in items]


def write_instances(path: str | Path, instances: Iterable[Instance]) -> Path:
    """Atomically write instances as JSONL; a `repo_snapshot` (absolute, or relative to the working
    directory as in memory, e.g. under a relative mutation cache) is written relative to the file."""
    path = Path(path)

    def record(i: Instance) -> dict:
        data = i.model_dump(mode="json", exclude_none=True)
        if i.repo_snapshot:
            data["repo_snapshot"] = os.path.relpath(Path(i.repo_snapshot).resolve(), path.parent.resolve())
        return data

    return atomic_write_jsonl(path, (record(i) for i in instances))

"""What identifies a checkpoint, without loading it (no torch): served and in-process students alike
name their checkpoint by content in their identity, so rollout and label caches follow the weights.

A checkpoint directory is a model, a LoRA adapter, or a *base record*: a `daggerlm_checkpoint.json`
of kind `base` alone, naming a model that lives elsewhere (a user's directory or a hub id). init-model
writes one as iteration 0's checkpoint instead of copying the user's weights; `resolve` turns it
back into the model it names.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import lru_cache
from pathlib import Path

from daggerlm.errors import InputError
from daggerlm.io import atomic_write_json

CHECKPOINT_META = "daggerlm_checkpoint.json"


def is_path(name: str) -> bool:
    """Whether a model name can only be a directory, never a hub id (`org/name`): the one rule for
    where a student may come from, shared by the loader and dvc.yaml's deps."""
    return name.startswith((".", "/")) or name.count("/") != 1


def write_base_record(out: str | Path, base: str) -> dict:
    """Make `out` the checkpoint that stands for `base` (a model directory or hub id), without its
    weights: a local base is recorded with the content hash of its files, a hub id with the commit
    of its cached snapshot (None when none is cached)."""
    local, out = Path(base), Path(out)
    if local.resolve() == out.resolve():
        raise InputError(f"student.model: {base} is init-model's own output; name the base model to start from")
    if local.is_file() or (is_path(base) and not local.is_dir()):
        raise InputError(f"student.model: {base}: expected a model directory or a hub id (org/name)")
    if local.is_dir() and not ((local / "config.json").is_file() or (local / "adapter_config.json").is_file()):
        raise InputError(f"student.model: {base}: not a model directory (no config.json)")
    fingerprint = checkpoint_fingerprint(base)
    meta = {"format": "daggerlm.checkpoint/1", "kind": "base", "base_model": base, "local": local.is_dir(),
            "content_hash": fingerprint if local.is_dir() else None,
            "revision": None if local.is_dir() else fingerprint.partition("@")[2] or None}
    shutil.rmtree(out, ignore_errors=True)
    atomic_write_json(out / CHECKPOINT_META, meta)
    return meta


def base_record(path: str | Path) -> dict | None:
    """The base a checkpoint directory stands for, or None when it holds a model itself."""
    meta = Path(path) / CHECKPOINT_META
    if not meta.is_file():
        return None
    record = json.loads(meta.read_text())
    return record if record.get("kind") == "base" else None


def resolve(path: str) -> str:
    """The model to load for a checkpoint: the base a base record names, else the path itself."""
    record = base_record(path) if Path(path).is_dir() else None
    return record["base_model"] if record else path


def check_base(record: dict, where: str | Path) -> str:
    """The recorded base, once its files are checked against the recorded hash: a base changed in
    place after init-model would otherwise go on under the old record's name."""
    base = record["base_model"]
    if record.get("local"):
        if not Path(base).is_dir():
            raise InputError(f"{base}: the base model recorded in {where} is gone")
        if (now := checkpoint_fingerprint(base)) != record["content_hash"]:
            raise InputError(f"{base}: changed since init-model recorded it in {where} (content hash "
                             f"{record['content_hash']}, now {now}); run init-model again")
    return base


def checkpoint_fingerprint(path: str) -> str:
    """Short content hash of a checkpoint directory's files (weights or adapter, tokenizer, config;
    not daggerlm's own metadata, which records timings); a base record is named by its base. A hub
    id is named by the commit of its locally cached snapshot, or by the id alone when none is cached."""
    path = resolve(path)
    p = Path(path)
    if not p.is_dir():
        return _hub_snapshot(path)
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.name != CHECKPOINT_META and not f.name.startswith("."))
    listing = tuple((str(f.relative_to(p)), *_stamp(f)) for f in files)
    return _content_hash(str(p.resolve()), listing)


def _stamp(f: Path) -> tuple[int, int, int]:
    st = f.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


@lru_cache(maxsize=64)
def _content_hash(root: str, listing: tuple) -> str:
    """Memoized by the files' names, sizes, mtimes and inodes: a stage hashes a big checkpoint once."""
    h = hashlib.sha256()
    for name, *_ in listing:
        h.update(name.encode() + b"\0")
        with open(Path(root) / name, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()[:12]


def _hub_snapshot(name: str) -> str:
    try:
        from huggingface_hub import snapshot_download

        return f"{name}@{Path(snapshot_download(name, local_files_only=True)).name[:12]}"
    except Exception:  # not cached (or not a hub id): the name is all there is
        return name

"""What identifies a checkpoint, without loading it (no torch): served and in-process students alike
name their checkpoint by content in their identity, so rollout and label caches follow the weights."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

CHECKPOINT_META = "daggerlm_checkpoint.json"


def checkpoint_fingerprint(path: str) -> str:
    """Short content hash of a checkpoint directory's files (weights or adapter, tokenizer, config;
    not daggerlm's own metadata, which records timings). A hub id is named by the commit of its
    locally cached snapshot, or by the id alone when none is cached."""
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

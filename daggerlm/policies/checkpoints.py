"""What identifies a checkpoint, without loading it (no torch): served and in-process students alike
name their checkpoint by content in their identity, so rollout and label caches follow the weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CHECKPOINT_META = "daggerlm_checkpoint.json"


def checkpoint_fingerprint(path: str) -> str:
    """Short content fingerprint: the checkpoint metadata when present, else file names and sizes."""
    p = Path(path)
    if not p.is_dir():
        return path
    meta = p / CHECKPOINT_META
    if meta.is_file():
        blob = meta.read_bytes()
    else:
        blob = json.dumps(sorted((f.name, f.stat().st_size) for f in p.iterdir() if f.is_file())).encode()
    return hashlib.sha256(blob).hexdigest()[:12]

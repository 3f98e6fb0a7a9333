"""Per-repository virtual environments for the local runtime: built once, reused by every episode.

A repository's tests import its code from the working copy (the current directory comes first on
`sys.path`); the environment supplies its test dependencies and installed metadata.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from daggerlm.io import atomic_write_json

MARKER = ".daggerlm-env.json"


def build_env(root: str | Path, name: str, requirements: list[str]) -> Path:
    """`root/name` with `requirements` installed; its python. The marker is written last, so a build
    that was interrupted is redone, never used."""
    env = Path(root).resolve() / name
    marker = env / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("requirements") == requirements:
        return env / "bin" / "python"
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, capture_output=True)
    r = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *requirements], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"environment {name}: pip install {' '.join(requirements)} failed: "
                           f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
    atomic_write_json(marker, {"requirements": requirements})
    return env / "bin" / "python"

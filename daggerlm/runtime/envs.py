"""Per-repository virtual environments for the local runtime: built once, reused by every episode.

A repository's tests import its code from the working copy, not from the environment: in the flat
layout through the current directory, which comes first on `sys.path`; in the src layout through
the environment's `worktree_paths` (e.g. `src`), which the sandbox puts on `PYTHONPATH` under each
episode's worktree. That is what an editable install does (SWE-bench's testbeds are `pip install -e`),
done per episode: the environment is shared by episodes whose worktrees lie at different paths, so
it cannot name one. The environment supplies the test dependencies and the installed metadata.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from daggerlm.io import atomic_write_json

MARKER = ".daggerlm-env.json"


def build_env(root: str | Path, name: str, requirements: list[str], worktree_paths: list[str] = ()) -> Path:
    """`root/name` with `requirements` installed; its python. `worktree_paths`: directories of the
    worktree, relative to it, that its commands find first on `sys.path`. The marker is written last,
    so a build that was interrupted is redone, never used."""
    env = Path(root).resolve() / name
    marker = env / MARKER
    worktree_paths = list(worktree_paths)
    built = json.loads(marker.read_text()) if marker.is_file() else {}
    if built.get("requirements") == requirements:
        if built.get("worktree_paths", []) != worktree_paths:  # nothing to install: only what the sandbox reads
            atomic_write_json(marker, {"requirements": requirements, "worktree_paths": worktree_paths})
        return env / "bin" / "python"
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, capture_output=True)
    r = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *requirements], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"environment {name}: pip install {' '.join(requirements)} failed: "
                           f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
    atomic_write_json(marker, {"requirements": requirements, "worktree_paths": worktree_paths})
    return env / "bin" / "python"


def worktree_paths(python: str | Path) -> list[str]:
    """The worktree's directories an environment's commands find first on `sys.path` (`build_env`)."""
    marker = Path(python).parent.parent / MARKER
    return json.loads(marker.read_text()).get("worktree_paths", []) if marker.is_file() else []

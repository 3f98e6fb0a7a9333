"""Throwaway projects for pipeline tests: a fresh copy of this repository (the README's path), or git +
DVC with tiny params written as sparsely as a user writes them, their dvc.yaml generated, prefect.toml."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from daggerlm.dagger.pipeline import write_pipeline
from tests.conftest import REPO, tiny_overrides

GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _run(args, cwd, env):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def nested(dotted: dict) -> dict:
    """{"a.b": 1} as {"a": {"b": 1}}: how a user writes the same params in params.yaml."""
    out: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def make_project(tmp_path, **overrides):
    """A git + DVC repository whose params.yaml holds only the tiny sizes (every other param a default),
    and its dvc.yaml; returns (path, params, env)."""
    from daggerlm.config import load_params

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "prefect.toml", project / "prefect.toml")
    given = tiny_overrides(tmp_path, **{"data": "data", "student.model": "data/checkpoints/iter_0",
                                        "dagger.label_cache": ".daggerlm/label_cache", "runtime.workdir": None,
                                        **overrides})
    (project / "params.yaml").write_text(yaml.safe_dump(nested(given), sort_keys=False))
    p = load_params(project / "params.yaml")
    (project / ".gitignore").write_text("/.daggerlm/\n/.prefect/\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           **GIT_ENV}
    _run(["git", "init", "-q"], project, env)
    _run(["dvc", "init", "-q"], project, env)
    write_pipeline(p, project / "dvc.yaml")  # what `daggerlm pipeline write` writes: dvc.yaml, .dvcignore's lines
    return project, p, env


def fresh_copy(dest: Path) -> Path:
    """This checkout as a clone of it would be: its tracked files and new ones git does not ignore
    (nothing built: no .venv, models/, data/, .prefect/), committed in a new repository."""
    env = {**os.environ, **GIT_ENV}
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():  # a file deleted but not yet staged is listed, and absent
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    _run(["git", "init", "-q"], dest, env)
    _run(["git", "add", "-A"], dest, env)
    _run(["git", "commit", "-qm", "fresh copy"], dest, env)
    return dest

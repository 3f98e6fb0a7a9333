"""A throwaway project for pipeline tests: git + DVC, dvc.yaml generated for tiny params, prefect.toml."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from daggerlm.dagger.pipeline import dvc_yaml
from tests.conftest import REPO, tiny_params


def _run(args, cwd, env):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def make_project(tmp_path, **overrides):
    """A git + DVC repository with tiny params and their dvc.yaml; returns (path, params, env)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "prefect.toml", project / "prefect.toml")
    p = tiny_params(tmp_path, **{"data": "data", "student.model": "data/checkpoints/iter_0",
                                 "dagger.label_cache": ".daggerlm/label_cache", "runtime.workdir": None, **overrides})
    params = p.model_dump(mode="json")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / "dvc.yaml").write_text(dvc_yaml(p))
    (project / ".gitignore").write_text("/.daggerlm/\n/.prefect/\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    _run(["git", "init", "-q"], project, env)
    _run(["dvc", "init", "-q"], project, env)
    return project, p, env

"""Deterministic git plumbing for repository snapshots (trusted content only).

Commits use a fixed identity and date and ignore the user's git config, so the same files always
give the same commit hash: the synthetic family's `base_commit` is real and reproducible.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from daggerlm.errors import InputError

GIT_ENV = {
    "GIT_AUTHOR_NAME": "daggerlm", "GIT_AUTHOR_EMAIL": "daggerlm@localhost", "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "daggerlm", "GIT_COMMITTER_EMAIL": "daggerlm@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str, input: str | None = None) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True, text=True,
                            env={**os.environ, **GIT_ENV})
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit_files(repo: Path, files: dict[str, str], message: str = "base") -> str:
    """Create a git repository at `repo` holding exactly `files`; return the commit hash."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    write_files(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def diff_against(repo: Path, commit: str, files: dict[str, str]) -> str:
    """The unified diff that turns `commit` into `commit` + `files`, leaving the worktree as it was."""
    write_files(repo, files)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", commit)
    git(repo, "reset", "-q", "--hard", commit)
    return patch


def commit_file_change(repo: Path, parent: str, path: str, text: str, message: str) -> str:
    """A commit on top of `parent` that changes one file, made without touching the worktree or the
    index (a private index file), so many can be made in one repository; deterministic hash."""
    blob = git(repo, "hash-object", "-w", "--stdin", input=text).strip()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **GIT_ENV, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        run = lambda *args: subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,  # noqa: E731
                                           env=env, check=True).stdout.strip()
        run("read-tree", parent)
        mode = run("ls-files", "-s", "--", path).split(" ")[0] or "100644"
        run("update-index", "--cacheinfo", f"{mode},{blob},{path}")
        tree = run("write-tree")
    return git(repo, "commit-tree", tree, "-p", parent, "-m", message).strip()


def checkout_instance(instance, dest: Path) -> None:
    """`dest`: the instance's repository at `base_commit`, from its inline files or its snapshot."""
    if instance.repo_files is not None:
        commit = commit_files(dest, instance.repo_files)
        if commit != instance.base_commit:
            raise InputError(f"instance {instance.instance_id}: repo_files commit to {commit[:12]}, "
                             f"not base_commit {instance.base_commit[:12]}")
    else:
        git(Path("."), "clone", "-q", "--no-checkout", str(instance.repo_snapshot), str(dest))
        git(dest, "checkout", "-q", instance.base_commit)

"""Where agent commands run, and the agent's scaffold."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from daggerlm.config.base import Section


class RuntimeConfig(Section):
    kind: Literal["local", "docker", "auto"] = "local"
    """Where agent commands run: `local` (Linux namespaces, one git worktree per episode), `docker`
    (one container per episode: the instance's `image`, else `docker_image` with the repository
    copied to /testbed), or `auto`: per instance, Docker for one that names its `image` (SWE-bench /
    SWE-Gym records), the local sandbox for the others (synthetic, mutation)."""
    docker_image: str = "daggerlm/base:bookworm"
    """Image of instances without their own (`daggerlm docker build-base` builds it locally)."""
    cpus: float = Field(1.0, gt=0)
    """CPUs of one container."""
    pids_limit: int = Field(256, ge=16)
    """Processes of one container or one local command (a fork bomb stops here)."""
    timeout_s: float = Field(30.0, gt=0)
    """Wall-clock limit of one agent command; the command's whole process tree is killed after it."""
    max_output_bytes: int = Field(65536, ge=1024)
    """Bytes of a command's output kept (head and tail); the rest is dropped and counted."""
    memory_mb: int = Field(4096, ge=64)
    """Memory of an agent command: per process (`ulimit -v`) in the local sandbox, and for all its
    processes together in a container, or in the local sandbox's cgroup when it runs as root."""
    max_file_mb: int = Field(64, ge=1)
    """Largest file an agent command may write (`ulimit -f`)."""
    disk_mb: int = Field(2048, ge=16)
    """Most the files an episode writes may grow to (local: the episode directory, with the
    repository, home and temporary files; Docker: the container's writable layer); a command that
    grows them further is killed (checked every second)."""
    workdir: str | None = None
    """Parent directory of episode directories (default: the system temporary directory). Keep it
    outside any project: pytest in an episode reads config files in parent directories (a project's
    `pyproject.toml` above the task's repository puts its warnings into every observation)."""
    python: str | None = None
    """Interpreter that `python` means inside the sandbox (default: the one running daggerlm)."""
    envs_dir: str = ".daggerlm/envs"
    """Per-repository virtual environments; an instance's `environment` names one (its python then
    runs that instance's commands)."""
    env: dict[str, str] = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    """Extra environment of agent commands. The default keeps the pytest plugins of daggerlm's own
    dependencies out of the task repositories' test runs (and makes each run ~4x faster)."""
    allow_unsandboxed: bool = False
    """Run agent commands without network and filesystem isolation when namespaces are unavailable. Unsafe."""
    mask_durations: bool = True
    """Show test-runner durations ("3 passed in 0.02s") as "in <t>": the same state then gives the same
    observation in every run, so the label cache hits and a re-run reproduces the same data."""


class AgentConfig(Section):
    step_limit: int = Field(12, ge=1)
    """Most turns (model calls) per episode."""
    max_consecutive_format_errors: int = Field(3, ge=0)
    """End an episode after this many unparsable responses in a row (0: never)."""
    observation_chars: int = Field(2000, ge=200)
    """Characters of command output shown to the model (head and tail of it)."""



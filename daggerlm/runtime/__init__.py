"""Where agent commands run: `local` (Linux namespaces, one git worktree per episode), `docker`
(one container per episode), or `auto`: each instance where it can run (its image, else locally)."""

from daggerlm.config import RuntimeConfig
from daggerlm.instances.schema import Instance
from daggerlm.runtime.sandbox import LocalSandbox, Sandbox, UnsafeSandboxError, isolation_problem


def runs_in_docker(instance: Instance, runtime: RuntimeConfig) -> bool:
    """Whether `instance` runs in a container: always under `docker`; under `auto` when it names its image."""
    return runtime.kind == "docker" or (runtime.kind == "auto" and bool(instance.image))


def open_sandbox(instance: Instance, runtime: RuntimeConfig) -> Sandbox:
    """The sandbox that `runtime.kind` picks for this instance, for one episode (use it as a context manager)."""
    if runs_in_docker(instance, runtime):
        from daggerlm.runtime.docker import DockerSandbox

        return DockerSandbox(instance, runtime)
    return LocalSandbox(instance, runtime)


__all__ = ["LocalSandbox", "Sandbox", "UnsafeSandboxError", "isolation_problem", "open_sandbox", "runs_in_docker"]

"""Where agent commands run: `local` (Linux namespaces, one git worktree per episode) or `docker`
(one container per episode)."""

from daggerlm.runtime.sandbox import LocalSandbox, Sandbox, UnsafeSandboxError, isolation_problem


def open_sandbox(instance, runtime) -> Sandbox:
    """The sandbox that `runtime.kind` names, for one episode (use it as a context manager)."""
    if runtime.kind == "docker":
        from daggerlm.runtime.docker import DockerSandbox

        return DockerSandbox(instance, runtime)
    return LocalSandbox(instance, runtime)


__all__ = ["LocalSandbox", "Sandbox", "UnsafeSandboxError", "isolation_problem", "open_sandbox"]

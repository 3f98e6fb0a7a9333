"""Where agent commands run: the local namespace sandbox (Docker comes later)."""

from daggerlm.runtime.sandbox import LocalSandbox, UnsafeSandboxError, isolation_problem

__all__ = ["LocalSandbox", "UnsafeSandboxError", "isolation_problem"]

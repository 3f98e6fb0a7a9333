"""The two kinds of failure a user must tell apart, each with its own exit status.

- `InputError` (exit 2): bad input from a user file or parameter; the message names the file, field
  or value. Retrying cannot help.
- `InfrastructureError` (exit 75, EX_TEMPFAIL): something outside the agent failed (a model server
  unreachable, a sandbox that could not start). Never stored as a result; a rerun retries it.
"""

INPUT_ERROR_EXIT = 2
INFRASTRUCTURE_EXIT = 75


class InputError(ValueError):
    """Bad input from a user file or parameter; the message names the file, field or value."""


class InfrastructureError(RuntimeError):
    """A failure outside the agent's control; transient as far as the pipeline knows."""

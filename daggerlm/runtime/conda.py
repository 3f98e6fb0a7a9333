"""The `testbed` conda environment of an official SWE-bench / SWE-Gym image, active for agent commands.

Official images (swebench's Dockerfiles: miniconda at /opt/miniconda3, the repository's environment
`testbed`, the repository at /testbed) run their tests after `source /opt/miniconda3/bin/activate`
and `conda activate testbed`, the eval script's first lines (`evaluation.harness.swebench_spec`).
An agent's `python` and `pytest` must be that environment's too, not the image's system python.

How: once per container, at its start, those same two lines run in it, and what they changed in the
environment (PATH, CONDA_PREFIX, CONDA_DEFAULT_ENV, whatever the environment's activate.d scripts
export) is passed to every later `docker exec`. Not a prefix on every command (the eval script's
way, or mini-swe-agent's `BASH_ENV=~/.bashrc`), because: conda's activation starts conda's own
python (twice: `activate`, then `conda activate`), on each of the hundreds of commands of an
episode; an activation that breaks would fail or clutter every observation the agent sees, and the
trajectories trained on, where here it fails once, when the sandbox opens, as an infrastructure
error; and the agent's command runs as written. What a command does not get is shell state: the `conda` shell function
(`conda` itself is on PATH; `conda activate` needs `source /opt/miniconda3/bin/activate` first, as
in the harness).

An image without that layout (the images built here, `runtime.images`) gets nothing: its commands
run as before.
"""

from __future__ import annotations

from swebench.image_builder.constants import CONTAINER_ENV_NAME

from daggerlm.runtime.sandbox import SandboxSetupError

CONDA_ROOT = "/opt/miniconda3"
ENV_NAME = CONTAINER_ENV_NAME  # "testbed", swebench's own name for it
ACTIVATE: tuple[str, ...] = (f"source {CONDA_ROOT}/bin/activate", f"conda activate {ENV_NAME}")
"""The activation of the official eval scripts; the one place it is spelled."""
OFFICIAL_SOURCES: tuple[str, ...] = ("swebench", "swe-gym")
"""Record sources that run in published images, laid out as above."""
NO_LAYOUT = 3
"""Exit status of `activation_script` in an image without the layout."""
SEPARATOR = "--daggerlm-activated--"
SHELL_STATE = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})
"""Variables bash keeps for itself, not activation's."""


def activation_script() -> str:
    """bash: exit NO_LAYOUT where the image has no testbed environment; else print the environment
    (NUL-separated, as `env -0`), SEPARATOR, and the environment after ACTIVATE. Activation's own
    output goes to stderr, so stdout holds only the two environments."""
    return "\n".join([f"[ -f {CONDA_ROOT}/bin/activate ] && [ -d {CONDA_ROOT}/envs/{ENV_NAME} ] || exit {NO_LAYOUT}",
                      "env -0", f"printf '%s\\0' {SEPARATOR}",
                      *(f"{line} >&2 || exit 1" for line in ACTIVATE), "env -0"])


def _variables(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items if "=" in item)


def activated_variables(returncode: int, stdout: bytes | None, stderr: bytes | None) -> dict[str, str]:
    """What activation set or changed, from `activation_script`'s run; {} where the image has no
    testbed environment. Raises SandboxSetupError where it has one and activating it failed: an
    episode there would run outside the repository's environment."""
    if returncode == NO_LAYOUT:
        return {}
    items = (stdout or b"").decode(errors="replace").split("\0")
    if returncode != 0 or SEPARATOR not in items:
        tail = (stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise SandboxSetupError(f"activating the image's conda environment {ENV_NAME!r} ({'; '.join(ACTIVATE)}) "
                                f"failed (exit {returncode}): {' | '.join(tail) or 'no output'}")
    k = items.index(SEPARATOR)
    before, after = _variables(items[:k]), _variables(items[k + 1:])
    return {name: value for name, value in after.items() if name not in SHELL_STATE and before.get(name) != value}


def image_path(config: dict | None, default: str) -> str:
    """The PATH an image declares (its `Config.Env`: official images put /opt/miniconda3/bin first),
    where activation starts from, as in the harness's `docker exec`; `default` if none."""
    for item in (config or {}).get("Env") or []:
        if item.startswith("PATH="):
            return item.removeprefix("PATH=")
    return default

"""Typed configuration: one pydantic model per `params.yaml` section.

Field docstrings are the documentation. Unknown keys are errors (`extra="forbid"`), so a typo in
params.yaml fails with one line naming the key instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daggerlm.errors import InputError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class RuntimeConfig(Section):
    kind: Literal["local"] = "local"
    """Where agent commands run: `local` (Linux namespaces, one git worktree per episode)."""
    timeout_s: float = Field(30.0, gt=0)
    """Wall-clock limit of one agent command; the command's whole process tree is killed after it."""
    max_output_bytes: int = Field(65536, ge=1024)
    """Bytes of a command's output kept (head and tail); the rest is dropped and counted."""
    memory_mb: int = Field(4096, ge=64)
    """Virtual-memory limit of an agent command (`ulimit -v`)."""
    max_file_mb: int = Field(64, ge=1)
    """Largest file an agent command may write (`ulimit -f`)."""
    workdir: str | None = None
    """Parent directory of episode directories (default: the system temporary directory)."""
    python: str | None = None
    """Interpreter that `python` means inside the sandbox (default: the one running daggerlm)."""
    env: dict[str, str] = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    """Extra environment of agent commands. The default keeps the pytest plugins of daggerlm's own
    dependencies out of the task repositories' test runs (and makes each run ~4x faster)."""
    allow_unsandboxed: bool = False
    """Run agent commands without network and filesystem isolation when namespaces are unavailable. Unsafe."""


class AgentConfig(Section):
    step_limit: int = Field(12, ge=1)
    """Most turns (model calls) per episode."""
    max_consecutive_format_errors: int = Field(3, ge=0)
    """End an episode after this many unparsable responses in a row (0: never)."""
    observation_chars: int = Field(2000, ge=200)
    """Characters of command output shown to the model (head and tail of it)."""


class SyntheticConfig(Section):
    n: int = Field(50, ge=1)
    """Number of instances."""
    split: Literal["train", "eval"] = "eval"
    seed: int = 0
    modules_per_repo: int = Field(2, ge=1, le=6)
    functions_per_module: int = Field(3, ge=1, le=5)


class EvalConfig(Section):
    instances: SyntheticConfig = SyntheticConfig()
    policy: Literal["oracle"] = "oracle"
    """Policy that acts in the evaluation episodes."""
    workers: int = Field(2, ge=1)
    """Episodes run concurrently."""
    model_name: str = "oracle"
    """`model_name_or_path` written to predictions.jsonl."""


class Params(Section):
    seed: int = 0
    runtime: RuntimeConfig = RuntimeConfig()
    agent: AgentConfig = AgentConfig()
    evaluation: EvalConfig = EvalConfig()


def _describe(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    return f"{source}: {key}: {e['msg']} (got {e['input']!r})"


def load_params(path: str | Path | None = None, overrides: dict | None = None) -> Params:
    """Load params.yaml (absent file: defaults), apply overrides, validate."""
    data: dict = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: params file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputError(f"{p}: expected a mapping of sections at the top level")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise InputError(_describe(err, source)) from None

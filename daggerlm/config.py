"""Typed configuration: one pydantic model per `params.yaml` section.

Field docstrings are the documentation. Unknown keys are errors (`extra="forbid"`), so a typo in
params.yaml fails with one line naming the key instead of being silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from daggerlm.dagger.schedules import BetaSchedule
from daggerlm.errors import InputError
from daggerlm.io import atomic_write_text, load_yaml
from daggerlm.policies.history_view import HistoryWindow
from daggerlm.policies.sampling import Sampling
from daggerlm.training.config import TinyModelConfig, TrainConfig


_READS: set[str] | None = None
"""While `record_reads` runs: the dotted params read, from any thread."""
_PATHS: dict[int, str] = {}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    def __getattribute__(self, name: str):
        value = super().__getattribute__(name)
        if _READS is not None and not name.startswith("_") and name in type(self).model_fields \
                and not isinstance(value, Section) and (path := _PATHS.get(id(self))) is not None:
            _READS.add(f"{path}{name}")
        return value

    def model_dump(self, *args, **kwargs):  # a whole section read at once (hashed, serialized)
        if _READS is not None and (path := _PATHS.get(id(self))):
            _READS.add(path.rstrip("."))
        return super().model_dump(*args, **kwargs)


@contextmanager
def record_reads(p: Section) -> Iterator[set[str]]:
    """Record the params read (dotted paths, e.g. `runtime.timeout_s`; a whole section when it is
    dumped) while the block runs: how the pipeline test checks each stage's declared reads."""
    global _READS

    def walk(section: Section, prefix: str) -> None:
        _PATHS[id(section)] = prefix
        for name in type(section).model_fields:
            value = object.__getattribute__(section, name)
            if isinstance(value, Section):
                walk(value, f"{prefix}{name}.")

    walk(p, "")
    _READS = reads = set()
    try:
        yield reads
    finally:
        _READS = None
        _PATHS.clear()


class RuntimeConfig(Section):
    kind: Literal["local", "docker"] = "local"
    """Where agent commands run: `local` (Linux namespaces, one git worktree per episode) or `docker`
    (one container per episode: the instance's `image`, else `docker_image` with the repository
    copied to /testbed)."""
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


class SplitConfig(Section):
    n: int = Field(16, ge=1)
    """Number of instances."""
    seed: int = 0
    """Generator seed (the splits are disjoint whatever the seeds)."""


class InstancesConfig(Section):
    train: SplitConfig = SplitConfig()
    """The instances rolled out in every iteration (the same ones each time, as in the paper)."""
    eval: SplitConfig = SplitConfig()
    """The held-out instances the student is evaluated on after every iteration."""
    modules_per_repo: int = Field(2, ge=1, le=6)
    functions_per_module: int = Field(3, ge=1, le=5)


class EndpointConfig(Section):
    """An OpenAI-compatible chat-completions endpoint: vLLM, `transformers serve`, a hosted API."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    """Model name sent with each request (student: empty means the checkpoint's path, as the servers
    this pipeline starts name it)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable that holds the API key. The key itself never goes in params."""
    stop: list[str] = []
    timeout_s: float = Field(120.0, gt=0)
    """Per request; a timed-out request is retried."""
    max_retries: int = Field(4, ge=0)
    """Retries on 429, 5xx, timeouts and connection errors (exponential backoff with jitter)."""
    concurrency: int = Field(32, ge=1)
    """Requests in flight at once, from this client."""
    requests_per_minute: float | None = Field(None, gt=0)
    """Client-side rate limit (None: none)."""
    send_state: bool = False
    """Send the instance id and environment snapshot with each request (privileged teachers served
    over HTTP, like `python -m daggerlm.serving.oracle_server`)."""
    price_input_per_mtok: float = Field(0.0, ge=0)
    """Cost of a million prompt tokens, for the per-iteration cost report."""
    price_output_per_mtok: float = Field(0.0, ge=0)

    @field_validator("api_key_env")
    @classmethod
    def _key_is_a_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) or value.startswith("sk-"):
            raise ValueError("expected the name of an environment variable (e.g. OPENAI_API_KEY); "
                             "never put the key itself in params")
        return value

    def policy_kwargs(self, sampling: Sampling, model: str | None = None, fingerprint: str | None = None) -> dict:
        return {"base_url": self.base_url, "model": self.model or model or "", "sampling": sampling,
                "api_key_env": self.api_key_env, "stop": self.stop, "timeout_s": self.timeout_s,
                "max_retries": self.max_retries, "concurrency": self.concurrency,
                "requests_per_minute": self.requests_per_minute, "send_state": self.send_state,
                "fingerprint": fingerprint}


class StudentServerConfig(Section):
    """How the `openai` student is served for a stage."""

    launch: Literal["none", "transformers", "vllm"] = "transformers"
    """`none`: use the server at `endpoint.base_url` as it is; `transformers`: start `transformers serve
    --continuous-batching` on the checkpoint (CPU); `vllm`: start `vllm serve` (GPU; vLLM installed in
    its own environment, see infra/)."""
    command: str | None = None
    """The server's executable (default: `transformers` / `vllm` next to this python, else on PATH)."""
    lora: bool = False
    """vLLM with LoRA checkpoints: serve the base model with `--enable-lora` and load each iteration's
    adapter at run time (`/v1/load_lora_adapter`) instead of restarting with merged weights."""
    startup_timeout_s: float = Field(600.0, gt=0)
    log_dir: str = ".daggerlm/logs"
    """Where a started server's output is kept (one file per start)."""
    extra_args: list[str] = []
    """More arguments for the server command (e.g. `--gpu-memory-utilization 0.8`)."""
    endpoint: EndpointConfig = EndpointConfig()


class StudentConfig(Section):
    kind: Literal["hf", "openai"] = "hf"
    """`hf`: in-process transformers; `openai`: over HTTP from a server (`server`)."""
    model: str = "data/checkpoints/iter_0"
    """Initial student: a model directory or hub id. With `build_tiny`, init-model writes it here."""
    build_tiny: bool = True
    """Build a tiny random-weight model with a locally trained tokenizer at `model` (init-model stage)."""
    tiny: TinyModelConfig = TinyModelConfig()
    sampling: Sampling = Sampling()
    max_prompt_tokens: int = Field(2048, ge=64)
    """Longer prompts keep their last tokens."""
    keep_turns: int | None = Field(None, ge=1)
    """Show the student only the task and its last this many turns (action and output), in generation
    and fine-tuning alike; None: every turn."""
    keep_observations: int | None = Field(None, ge=1)
    """Show the student only its last this many tool outputs in full (older ones: return code and a
    line count; every action stays), in generation and fine-tuning alike; None: the whole history."""
    device: str = "cpu"
    """Where the `hf` student generates and the tiny base is pretrained (`cuda`, `cuda:1`, ...);
    fine-tuning runs on CUDA whenever it is available."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The `hf` student's weights when it generates (training keeps float32 master weights)."""
    server: StudentServerConfig = StudentServerConfig()

    @property
    def window(self) -> HistoryWindow:
        return HistoryWindow(turns=self.keep_turns, observations=self.keep_observations)

    def policy_kwargs(self, model: str) -> dict:
        return {"model": model, "sampling": self.sampling, "max_prompt_tokens": self.max_prompt_tokens,
                "device": self.device, "dtype": self.dtype}


class TeacherConfig(Section):
    kind: Literal["oracle", "openai"] = "oracle"
    """Who labels states: `oracle` (privileged scripted expert) or `openai` (a model behind any
    OpenAI-compatible endpoint)."""
    endpoint: EndpointConfig = EndpointConfig()
    sampling: Sampling = Sampling(temperature=0.0, max_new_tokens=512)
    """Of the `openai` teacher (greedy by default: a label should not depend on luck)."""
    oracle_undo: Literal["paths", "all"] = "paths"
    """How the `oracle` takes back a wrong change: `paths` restores each changed file by name, `all`
    resets the whole worktree with one constant command (nothing to copy from the history)."""
    oracle_reshow: bool = False
    """Whether the `oracle` shows the buggy function again after an undo, so its fix copies from the
    last observation rather than from one turns back."""

    oracle_retest: bool = False
    """Whether the `oracle` runs the tests again after an undo (before showing the code), so the
    failing test that names the buggy function is the last observation, as at the start of an episode."""

    def oracle_kwargs(self) -> dict:
        return {"undo": self.oracle_undo, "reshow": self.oracle_reshow, "retest": self.oracle_retest}

    def policy_kwargs(self) -> dict:
        return self.endpoint.policy_kwargs(self.sampling) if self.kind == "openai" else self.oracle_kwargs()


class DaggerConfig(Section):
    iterations: int = Field(2, ge=1)
    beta: BetaSchedule = BetaSchedule()
    rollin_turns: int | None = Field(None, ge=0)
    """AggreVaTe-style roll-in: the student acts for the first κ turns, then the teacher (replaces the coin)."""
    concurrency: int = Field(8, ge=1)
    """Episodes run at once; the student generates for all of them in one batch per turn."""
    label_cache: str = ".daggerlm/label_cache"
    """Directory of the content-addressed teacher-label cache (shared by all iterations)."""
    episodes_per_iteration: int | None = Field(None, ge=1)
    """Train instances per iteration: iteration K rolls out the K-th slice of this many (wrapping
    around the train split), so every iteration meets new tasks; None: the whole split every iteration."""
    labels_per_iteration: int | None = Field(None, ge=1)
    """Label budget: at most this many new states join the aggregate per iteration (a seeded sample),
    so schedules compare at equal teacher-label budget; None: every labeled state."""
    max_failed_share: float = Field(0.0, ge=0, le=1)
    """Share of a stage's episodes (rollout, evaluate) or trajectories (label) that may fail because a
    policy could not be reached; they are left out of the stage's outputs and counted in its stats.
    More fail the stage (exit 75), so an outage is never recorded as the agent's failure; a rerun
    keeps what finished and retries the rest."""


class EvalConfig(Section):
    policy: Literal["student", "oracle"] = "student"
    """Who acts in evaluation episodes: the iteration's trained student, or the oracle (a sanity check)."""
    concurrency: int = Field(8, ge=1)


class Params(Section):
    seed: int = 0
    data: str = "data"
    """Root of every stage output (instances/, rollouts/iter_K/, labels/, aggregated/, checkpoints/, eval/)."""
    instances: InstancesConfig = InstancesConfig()
    student: StudentConfig = StudentConfig()
    teacher: TeacherConfig = TeacherConfig()
    dagger: DaggerConfig = DaggerConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    agent: AgentConfig = AgentConfig()


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def _describe(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        allowed = _allowed_keys(e["loc"])
        return f"{source}: unknown key '{key}'" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    shown = "hidden" if "key" in key else repr(e["input"])  # a key put where its name belongs stays out of logs
    return f"{source}: {key}: {e['msg']} (got {shown})"


def load_params(path: str | Path | None = None, overrides: dict | None = None) -> Params:
    """Load params.yaml (absent file: defaults), apply overrides, validate."""
    data: dict = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: params file not found")
        try:
            data = load_yaml(p.read_text()) or {}
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


def edit_params(path: str | Path, edit: Callable[[dict], None]) -> Params:
    """Apply `edit` to a params file, keeping its comments, quotes and layout; validate; write only
    if something changed. Returns the params as edited."""
    import io

    from ruamel.yaml import YAML

    path = Path(path)
    rt = YAML()
    rt.preserve_quotes = True
    before = path.read_text() if path.is_file() else ""
    data = rt.load(before) or {}
    edit(data)
    data.pop("pipeline", None)  # written by earlier versions; dvc.yaml now carries the per-iteration paths
    buffer = io.StringIO()
    rt.dump(data, buffer)
    try:
        params = Params.model_validate(load_yaml(buffer.getvalue()))
    except ValidationError as err:
        raise InputError(_describe(err, str(path))) from None
    if buffer.getvalue() != before:
        atomic_write_text(path, buffer.getvalue())
    return params


def set_iterations(path: str | Path, n: int) -> Params:
    """Rewrite `dagger.iterations` in a params file."""
    return edit_params(path, lambda data: data.setdefault("dagger", {}).__setitem__("iterations", n))

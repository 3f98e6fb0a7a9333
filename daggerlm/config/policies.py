"""The student and the teacher: sampling, endpoints, servers."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from daggerlm.config.base import Section
from daggerlm.config.training import TinyModelConfig


class Sampling(BaseModel):
    """Sampling parameters of model policies (part of a policy's identity)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    temperature: float = Field(0.7, ge=0.0)
    """0 means greedy decoding."""
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_new_tokens: int = Field(64, ge=1)


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
    """Requests in flight at once, from this client (unset, to a CPU `transformers serve` the stage starts: 8)."""
    requests_per_minute: float | None = Field(None, gt=0)
    """Client-side rate limit (None: none)."""
    send_state: bool = False
    """Send the instance id and environment snapshot with each request (privileged teachers served
    over HTTP, like `python -m daggerlm.serving.oracle_server`)."""
    logprobs: bool = False
    """The server returns log-probs (vLLM: `logprobs`/`top_logprobs` on chat, `prompt_logprobs` on
    completions); `transformers serve` and many hosted APIs do not, which limits a teacher to text labels.
    A served student then asks for each generated token's log-prob on its chat replies (by id, vLLM's
    `return_tokens_as_token_ids`): the behaviour log-probs DistIL's clip uses; a teacher's labels do not."""
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
    """With `launch: none`: the running vLLM takes each iteration's LoRA adapter at run time
    (`/v1/load_lora_adapter`, unloaded after the stage; the server needs `--enable-lora` and
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). A vLLM the stage starts always serves an adapter this way
    (its base with `--enable-lora`); a full model (iteration 0) is served as `student`, nothing loaded."""
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
    """Initial student: a model directory or hub id (org/name) with a chat template. With `build_tiny`,
    init-model writes it here; otherwise init-model records it as checkpoint 0 (a directory with the
    hash of its files, not a copy) and, given as a path that cannot be a hub id (absolute, ./relative),
    it is a DVC dep of init-model (regenerate dvc.yaml after changing it)."""
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


    def policy_kwargs(self, model: str) -> dict:
        return {"model": model, "sampling": self.sampling, "max_prompt_tokens": self.max_prompt_tokens,
                "device": self.device, "dtype": self.dtype}


class TeacherConfig(Section):
    kind: Literal["oracle", "openai", "hf"] = "oracle"
    """Who labels states: `oracle` (privileged scripted expert), `openai` (a model behind any
    OpenAI-compatible endpoint) or `hf` (a transformers model in the process: full distributions)."""
    model: str = ""
    """The `hf` teacher: a model directory or hub id; it must share the student's tokenizer."""
    device: str = "cpu"
    """Where the `hf` teacher runs."""
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

    def gives(self) -> Literal["text", "top_k", "full"]:
        """What this teacher can give beyond its label's text (the distillation objectives' targets)."""
        if self.kind == "hf":
            return "full"
        return "top_k" if self.kind == "openai" and self.endpoint.logprobs else "text"

    def policy_kwargs(self) -> dict:
        if self.kind == "hf":
            return {"model": self.model, "sampling": self.sampling, "device": self.device}
        return self.endpoint.policy_kwargs(self.sampling) if self.kind == "openai" else self.oracle_kwargs()



"""The student as a policy for one stage: in-process (`hf`) or over HTTP (`openai`) from a server
this stage starts on the checkpoint (`transformers serve` on CPU, `vllm serve` on GPUs) or from one
that is already running.

A LoRA checkpoint is served by vLLM as its base model with the adapter loaded at run time and
unloaded when the stage is done (`daggerlm.serving.vllm`): on a vLLM this stage starts, always; on
one already running (`launch: none`), with `server.lora`, so that server is never restarted.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from daggerlm.config import EndpointConfig, StudentConfig
from daggerlm.errors import InputError
from daggerlm.policies import make_policy
from daggerlm.policies.base import Policy
from daggerlm.policies.checkpoints import checkpoint_fingerprint
from daggerlm.policies.history_view import HistoryWindow, student_view
from daggerlm.serving import vllm
from daggerlm.serving.process import free_port, managed_server


CPU_IN_FLIGHT = 8
"""Requests a `transformers serve` on the CPU that this stage starts gets at once, unless
`student.server.endpoint.concurrency` is set: its continuous batching packs every live request into one
masked attention, so at 32 in flight a request costs the server twice the CPU it costs at 8
(`bench/rollout_concurrency.py`, "the server alone")."""


def client_endpoint(student: StudentConfig, base_url: str, model: str) -> EndpointConfig:
    """The endpoint the student's requests go to, as this stage reaches it."""
    endpoint, update = student.server.endpoint, {"base_url": base_url, "model": model}
    if (student.server.launch == "transformers" and student.device == "cpu"
            and "concurrency" not in endpoint.model_fields_set):
        update["concurrency"] = min(endpoint.concurrency, CPU_IN_FLIGHT)
    return endpoint.model_copy(update=update)


def executable(name: str, configured: str | None) -> str:
    """The server command: as configured, else beside this python (same environment), else on PATH."""
    found = configured or shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise InputError(f"student.server.launch: `{name}` not found (install it, or set student.server.command)")
    return found


def server_command(student: StudentConfig, checkpoint: str, port: int) -> tuple[list[str], str]:
    """(argv, the model name requests use) of the server to start."""
    server = student.server
    where = ["--host", "127.0.0.1", "--port", str(port)]
    if server.launch == "transformers":
        # on CPU the paged KV cache would otherwise claim most of the machine's memory (14 GB for a
        # 3.5M-parameter model here) and run ~5x slower; 5 % holds 32 episodes' contexts of a small model
        cache = ["--cb-max-memory-percent", "0.05"] if student.device == "cpu" and not any(
            a.startswith("--cb-") for a in server.extra_args) else []
        argv = [executable("transformers", server.command), "serve", *where, "--device", student.device,
                "--continuous-batching", *cache, *server.extra_args, checkpoint]
        return argv, checkpoint
    return vllm.serve_command(executable("vllm", server.command), checkpoint, where, server.extra_args)


@contextmanager
def open_student(student: StudentConfig, checkpoint: str) -> Iterator[Policy]:
    """The student policy for the duration of a stage, as it sees the history (`keep_turns`, `keep_observations`)."""
    with _open_policy(student, checkpoint) as policy:
        yield student_view(policy, HistoryWindow.of(student))


@contextmanager
def _open_policy(student: StudentConfig, checkpoint: str) -> Iterator[Policy]:
    """The student's policy (a server it started is stopped afterwards, an adapter it loaded unloaded)."""
    if student.kind == "hf":
        yield make_policy("hf", **student.policy_kwargs(checkpoint))
        return
    fingerprint = checkpoint_fingerprint(checkpoint)
    server, endpoint = student.server, student.server.endpoint
    key = os.environ.get(endpoint.api_key_env)
    with ExitStack() as stack:
        if server.launch == "none":
            base_url, provider = endpoint.base_url, None
            adapter = vllm.Adapter.of(checkpoint)
            if adapter and not server.lora and not endpoint.model:
                raise InputError(f"{checkpoint} is a LoRA adapter: set student.server.lora (the server loads it at "
                                 "run time) or student.server.endpoint.model (the name it is served under)")
            adapter = adapter if server.lora else None  # else: a model the server already serves as it is
            model = stack.enter_context(vllm.lora_adapter(base_url, adapter, key)) if adapter else (
                endpoint.model or checkpoint)
        else:
            port = free_port()
            argv, model = server_command(student, checkpoint, port)
            on_vllm = server.launch == "vllm"
            log = Path(server.log_dir) / f"student-server-{fingerprint}-{port}.log"
            base_url = stack.enter_context(managed_server(
                argv, port, log, health_path="/health" if on_vllm else "/v1/models",
                timeout_s=server.startup_timeout_s, env=vllm.RUNTIME_LORA_ENV if on_vllm else {}))
            provider = f"{server.launch} server"
            if on_vllm and (adapter := vllm.Adapter.of(checkpoint)):
                model = stack.enter_context(vllm.lora_adapter(base_url, adapter, key))
            elif on_vllm:
                vllm.require_served(base_url, model, key)
        served = client_endpoint(student, base_url, model)
        yield make_policy("openai", **served.policy_kwargs(student.sampling, fingerprint=fingerprint),
                          logprobs=served.logprobs,  # its behaviour log-probs
                          **({"provider": provider} if provider else {}))

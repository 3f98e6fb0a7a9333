"""The student as a policy for one stage: in-process (`hf`) or over HTTP (`openai`) from a server
this stage starts on the checkpoint (`transformers serve` on CPU, `vllm serve` on GPUs) or from one
that is already running.

With `server.lora`, the checkpoint is a LoRA adapter loaded into a running vLLM at run time
(`/v1/load_lora_adapter`, named by its content fingerprint), so the server is not restarted
between iterations.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daggerlm.config import StudentConfig
from daggerlm.errors import InputError
from daggerlm.policies import make_policy
from daggerlm.policies.base import Policy
from daggerlm.policies.checkpoints import checkpoint_fingerprint
from daggerlm.policies.history_view import HistoryWindow, student_view
from daggerlm.serving.process import free_port, managed_server

SERVED_NAME = "student"


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
    adapter = Path(checkpoint) / "adapter_config.json"
    if server.lora or adapter.is_file():  # serve the base model; the adapter is loaded after start
        base = json.loads(adapter.read_text())["base_model_name_or_path"] if adapter.is_file() else checkpoint
        argv = [executable("vllm", server.command), "serve", base, *where, "--enable-lora", *server.extra_args]
        return argv, SERVED_NAME
    argv = [executable("vllm", server.command), "serve", checkpoint, *where, "--served-model-name", SERVED_NAME,
            *server.extra_args]
    return argv, SERVED_NAME


def load_lora_adapter(base_url: str, name: str, path: str) -> None:
    """vLLM's runtime adapter loading (the server needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)."""
    body = json.dumps({"lora_name": name, "lora_path": str(Path(path).resolve())}).encode()
    request = urllib.request.Request(f"{base_url}/load_lora_adapter", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=300).read()
    except urllib.error.HTTPError as e:
        if "already" not in e.read().decode(errors="replace"):  # loaded by an earlier stage: fine
            raise RuntimeError(f"loading LoRA adapter {path} into {base_url} failed: HTTP {e.code}") from None


@contextmanager
def open_student(student: StudentConfig, checkpoint: str) -> Iterator[Policy]:
    """The student policy for the duration of a stage, as it sees the history (`keep_turns`, `keep_observations`)."""
    with _open_policy(student, checkpoint) as policy:
        yield student_view(policy, HistoryWindow.of(student))


@contextmanager
def _open_policy(student: StudentConfig, checkpoint: str) -> Iterator[Policy]:
    """The student's policy (a server it started is stopped afterwards)."""
    if student.kind == "hf":
        yield make_policy("hf", **student.policy_kwargs(checkpoint))
        return
    fingerprint = checkpoint_fingerprint(checkpoint)
    server, endpoint = student.server, student.server.endpoint
    if server.launch == "none":
        model = endpoint.model or checkpoint
        if server.lora and (Path(checkpoint) / "adapter_config.json").is_file():  # else: the base model itself
            model = f"{SERVED_NAME}-{fingerprint}"
            load_lora_adapter(endpoint.base_url, model, checkpoint)
        yield make_policy("openai", **endpoint.model_copy(update={"model": model}).policy_kwargs(
            student.sampling, fingerprint=fingerprint))
        return
    port = free_port()
    argv, model = server_command(student, checkpoint, port)
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"} if server.launch == "vllm" else {}
    log = Path(server.log_dir) / f"student-server-{fingerprint}-{port}.log"
    with managed_server(argv, port, log, timeout_s=server.startup_timeout_s, env=env) as base_url:
        if model == SERVED_NAME and server.launch == "vllm" and "--enable-lora" in argv:
            load_lora_adapter(base_url, SERVED_NAME, checkpoint)
        served = endpoint.model_copy(update={"base_url": base_url, "model": model})
        yield make_policy("openai", **served.policy_kwargs(student.sampling, fingerprint=fingerprint),
                          provider=f"{server.launch} server")

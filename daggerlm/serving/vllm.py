"""vLLM as the student's server: the `vllm serve` command for a checkpoint, and LoRA adapters loaded
into (and unloaded from) a running server.

Why this shape: vLLM cannot serve a LoRA adapter directory as a model. A full model (iteration 0, or
full fine-tuning) is served under the name requests use (`--served-model-name student`); an adapter
(`adapter_config.json` names its base) is served as its base with `--enable-lora` and a
`--max-lora-rank` that fits it, then loaded over HTTP (`POST /v1/load_lora_adapter`), requested by its
`lora_name`, and unloaded when the stage is done (`POST /v1/unload_lora_adapter`). Those two routes
exist only on a server started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (vllm/entrypoints/serve/lora/
api_router.py); daggerlm sets it on every vLLM it starts.

Whatever body vLLM answers with (`{"error": {"message", "type", "code"}}`, an older flat
`{"message", ...}`, FastAPI's `{"detail": ...}`, plain text) becomes one line: `InputError` when the
config or the adapter is wrong (a rerun would fail alike), `InfrastructureError` when a retry may help.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from daggerlm.errors import InfrastructureError, InputError
from daggerlm.policies.checkpoints import checkpoint_fingerprint

SERVED_NAME = "student"
"""What requests call a full model that daggerlm serves."""
RUNTIME_LORA_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values `--max-lora-rank` accepts (vllm/config/lora.py, `MaxLoRARanks`; vLLM's default is 16)."""
_CONFIG_ERRORS = re.compile(r"max_lora_rank|LoRA is not enabled|No adapter found|does not exist")
"""Messages vLLM sends with a 5xx (or 404) that no retry can fix."""


@dataclass(frozen=True)
class Adapter:
    """A PEFT LoRA checkpoint as vLLM needs it: where it is, its base model, its largest rank."""

    path: str
    base: str
    rank: int

    @classmethod
    def of(cls, checkpoint: str) -> Adapter | None:
        """The adapter at `checkpoint`, or None when it is a full model (a directory or a hub id)."""
        config_file = Path(checkpoint) / "adapter_config.json"
        if not config_file.is_file():
            return None
        try:
            config = json.loads(config_file.read_text())
            base, rank = config["base_model_name_or_path"], config["r"]
            ranks = [rank, *(config.get("rank_pattern") or {}).values()]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{config_file}: not a PEFT LoRA config ({type(e).__name__}: {e})") from None
        if not base or not all(isinstance(r, int) and r > 0 for r in ranks):
            raise InputError(f"{config_file}: needs `base_model_name_or_path` and a positive integer `r`")
        if Path(base).exists():  # a local base: absolute, so the server finds it whatever its cwd
            base = str(Path(base).resolve())
        return cls(str(config_file.parent.resolve()), base, max(ranks))

    def name(self) -> str:
        """The `lora_name` requests use: named by content, so a stage never talks to another's weights."""
        return f"{SERVED_NAME}-{checkpoint_fingerprint(self.path)}"


def max_lora_rank(rank: int, where: str = "adapter") -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds `rank`."""
    fits = [r for r in MAX_LORA_RANKS if r >= rank]
    if not fits:
        raise InputError(f"{where}: LoRA rank {rank} is above vLLM's largest --max-lora-rank ({MAX_LORA_RANKS[-1]})")
    return fits[0]


def serve_command(exe: str, checkpoint: str, where: list[str], extra_args: list[str]) -> tuple[list[str], str]:
    """(argv of `vllm serve`, the model name requests use) for `checkpoint`."""
    adapter = Adapter.of(checkpoint)
    if adapter is None:
        return [exe, "serve", checkpoint, *where, "--served-model-name", SERVED_NAME, *extra_args], SERVED_NAME
    base = Path(adapter.base)
    if (base.exists() or adapter.base.startswith((".", "/"))) and not (base / "config.json").is_file():
        raise InputError(f"{adapter.path}/adapter_config.json: its base model {adapter.base} is not a model "
                         "directory (no config.json)")
    rank = [] if any(a.split("=")[0] == "--max-lora-rank" for a in extra_args) else [
        "--max-lora-rank", str(max_lora_rank(adapter.rank, adapter.path))]
    return [exe, "serve", adapter.base, *where, "--enable-lora", *rank, *extra_args], adapter.name()


# --- the running server ------------------------------------------------------------------------
def error_message(body: str) -> str:
    """The message of an error body, on one line."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message = body
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict) and inner.get("message"):
            message = inner["message"]
        elif isinstance(inner, str):
            message = inner
        elif isinstance(data.get("detail"), str):
            message = data["detail"]
    return " ".join(str(message).split()) or "(empty body)"


def _call(url: str, body: dict | None, api_key: str | None, timeout_s: float = 300) -> tuple[int, str]:
    """(HTTP status, body) of a GET (no `body`) or a JSON POST; an unreachable server is transient."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout_s) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:  # refused, reset, timed out
        raise InfrastructureError(f"vLLM at {url} unreachable: {getattr(e, 'reason', e)}") from None


def _fail(what: str, url: str, status: int, body: str) -> Exception:
    message = error_message(body)
    line = f"{what} at {url}: HTTP {status}: {message}"
    if status == 404 and message == "Not Found":  # FastAPI's answer for a route the server does not have
        return InputError(f"{line} (the server must run with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True to load "
                          "LoRA adapters at run time)")
    if status in (408, 429) or (status >= 500 and not _CONFIG_ERRORS.search(message)):
        return InfrastructureError(line)
    return InputError(line)


def load_lora_adapter(base_url: str, name: str, path: str, api_key: str | None = None) -> bool:
    """Load the adapter at `path` as `name`; False when a server already had it (names are by content:
    same name, same weights)."""
    url = f"{base_url}/load_lora_adapter"
    status, body = _call(url, {"lora_name": name, "lora_path": path}, api_key)
    if status == 200:
        return True
    if status == 400 and "has already been loaded" in body:
        return False
    raise _fail(f"loading LoRA adapter {path} as '{name}'", url, status, body)


def unload_lora_adapter(base_url: str, name: str, api_key: str | None = None, missing_ok: bool = False) -> None:
    url = f"{base_url}/unload_lora_adapter"
    status, body = _call(url, {"lora_name": name}, api_key)
    if status == 200 or (missing_ok and status == 404 and "cannot be found" in body):
        return
    raise _fail(f"unloading LoRA adapter '{name}'", url, status, body)


@dataclass
class PromptScores:
    """The server's scores of a token sequence, at every position after the first (vLLM's
    `prompt_logprobs`): the log-prob of the realized token and the top-k ids with their log-probs."""

    token_logp: list[float]
    top_ids: list[list[int]]
    top_logp: list[list[float]]


def prompt_logprobs(base_url: str, model: str, ids: list[int], k: int, api_key: str | None = None,
                    timeout_s: float = 300) -> PromptScores:
    """Score `ids` as given (token ids, never text: both sides must score the same sequence) through
    `/v1/completions` with `prompt_logprobs: k`; one token is generated and ignored."""
    url = f"{base_url}/completions"
    status, body = _call(url, {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0.0,
                               "prompt_logprobs": k}, api_key, timeout_s)
    if status != 200:
        raise _fail(f"scoring {len(ids)} tokens with {k} prompt logprobs", url, status, body)
    rows = json.loads(body)["choices"][0]["prompt_logprobs"][1:]
    scores = PromptScores([], [], [])
    for token, row in zip(ids[1:], rows):
        scores.token_logp.append(row[str(token)]["logprob"])
        top = sorted((v["rank"], int(i), v["logprob"]) for i, v in row.items() if v["rank"] <= k)[:k]  # the
        scores.top_ids.append([i for _, i, _ in top])  # realized token is in the row even when it ranks below k
        scores.top_logp.append([lp for _, _, lp in top])
    return scores


def served_models(base_url: str, api_key: str | None = None) -> list[str]:
    """The model names a server answers to (`GET /v1/models`: the base, then the loaded adapters)."""
    url = f"{base_url}/models"
    status, body = _call(url, None, api_key, timeout_s=30)
    if status != 200:
        raise _fail("listing models", url, status, body)
    return [card["id"] for card in json.loads(body)["data"]]


def require_served(base_url: str, name: str, api_key: str | None = None) -> None:
    """Fail at the start of a stage, not on every request, when the server does not know `name`."""
    names = served_models(base_url, api_key)
    if name not in names:
        raise InputError(f"{base_url} serves {names}, not `{name}` (see student.server.endpoint.model)")


@contextmanager
def lora_adapter(base_url: str, adapter: Adapter, api_key: str | None = None) -> Iterator[str]:
    """The adapter loaded for the block (its name); unloaded after, unless another stage loaded it."""
    name = adapter.name()
    loaded = load_lora_adapter(base_url, name, adapter.path, api_key)
    try:
        require_served(base_url, name, api_key)
        yield name
    except BaseException:
        if loaded:  # best effort: the block's own error is the one to report
            try:
                unload_lora_adapter(base_url, name, api_key, missing_ok=True)
            except (InputError, InfrastructureError):
                pass
        raise
    if loaded:
        unload_lora_adapter(base_url, name, api_key, missing_ok=True)

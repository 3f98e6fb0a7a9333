"""A stand-in for `vllm serve` where vLLM cannot run (no GPU; vLLM never in daggerlm's environment):
a real HTTP server process with vLLM's command line, routes, response shapes and error bodies, taken
from vLLM's source:
- command line: `vllm serve MODEL_TAG [--served-model-name N..] [--enable-lora] [--max-lora-rank R]`
  (argparse; an unknown flag exits 2 like vLLM's parser; ranks from vllm/config/lora.py MaxLoRARanks)
- GET /health, GET /v1/models (ModelCard: id, object, created, owned_by, root, parent, max_model_len,
  permission; adapters listed after the base, parent = the first served name: vllm/entrypoints/openai/
  models/serving.py, engine/protocol.py)
- POST /v1/load_lora_adapter, /v1/unload_lora_adapter: registered only with
  VLLM_ALLOW_RUNTIME_LORA_UPDATING=1/true (else FastAPI's 404 `{"detail": "Not Found"}`); success is
  plain text; errors are `{"error": {message, type, param, code}}` (serve/lora/api_router.py,
  models/serving.py)
- POST /v1/chat/completions: only for a served name or a loaded adapter, else 404 "The model `x` does
  not exist." (engine/serving.py `_check_model`); answers FAKE_VLLM_REPLY, with `logprobs` the served
  model's log-prob of each of its tokens (and the end-of-turn), named `token_id:N` under
  `return_tokens_as_token_ids` (ChatCompletionLogProbs: content of {token, logprob, bytes, top_logprobs}).
- POST /v1/completions with `prompt_logprobs` (token ids or text): the served model's own log-probs,
  computed with transformers when MODEL_TAG is a directory; k above `--max-logprobs` (20) and
  `stream` with prompt logprobs are 400s with vLLM's messages.
- `--api-key`: /v1 routes need `Authorization: Bearer KEY`, else 401 `{"error": "Unauthorized"}`.

FAKE_VLLM_RECORD=path appends one JSON line per start and per request, for tests to read.
Run as `python tests/serving/fake_vllm.py serve MODEL ...` (tests install it as `vllm`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_REPLY = "THOUGHT: Done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vllm")
    sub = parser.add_subparsers(dest="subcommand", required=True)
    serve = sub.add_parser("serve", prog="vllm serve")
    serve.add_argument("model_tag", nargs="?")
    serve.add_argument("--model")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", nargs="+")
    serve.add_argument("--enable-lora", action=argparse.BooleanOptionalAction, default=False)
    serve.add_argument("--max-lora-rank", type=int, choices=MAX_LORA_RANKS, default=16)
    serve.add_argument("--max-loras", type=int, default=1)
    serve.add_argument("--max-cpu-loras", type=int)
    serve.add_argument("--max-model-len", type=int)
    serve.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    serve.add_argument("--dtype", default="auto")
    serve.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    serve.add_argument("--seed", type=int)
    serve.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=False)
    serve.add_argument("--api-key")
    serve.add_argument("--max-logprobs", type=int, default=20)
    return parser.parse_args(argv)


class State:
    def __init__(self, args: argparse.Namespace):
        self.args, self.model = args, args.model_tag or args.model
        self.names = args.served_model_name or [self.model]
        self.runtime_lora = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "0").strip().lower() in ("1", "true")
        self.loras: dict[str, str] = {}  # lora_name -> lora_path
        self.lock = threading.Lock()
        config = Path(self.model) / "config.json"
        self.max_model_len = args.max_model_len or (
            json.loads(config.read_text()).get("max_position_embeddings", 2048) if config.is_file() else 2048)


def record(event: dict) -> None:
    if path := os.environ.get("FAKE_VLLM_RECORD"):
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


def error(message: str, err_type: str, code: int, param: str | None = None) -> tuple[int, dict]:
    return code, {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def card(model_id: str, root: str, parent: str | None, max_model_len: int | None) -> dict:
    return {"id": model_id, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": root,
            "parent": parent, "max_model_len": max_model_len,
            "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                            "created": int(time.time()), "allow_create_engine": False, "allow_sampling": True,
                            "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                            "allow_fine_tuning": False, "organization": "*", "group": None, "is_blocking": False}]}


def missing_fields(body: dict, fields: tuple[str, ...]) -> tuple[int, dict] | None:
    """pydantic's validation error as vLLM's exception handler words it (400, not FastAPI's 422)."""
    missing = [f for f in fields if f not in body]
    if not missing:
        return None
    errs = [{"type": "missing", "loc": ("body", f), "msg": "Field required", "input": body} for f in missing]
    message = f"{len(errs)} validation error{'s' if len(errs) > 1 else ''}:\n" + "".join(f"  {e}\n" for e in errs)
    return error(message.rstrip(), "Bad Request", 400, f"body.{missing[0]}")


def load(s: State, body: dict) -> tuple[int, dict | str]:
    if bad := missing_fields(body, ("lora_name", "lora_path")):
        return bad
    name, path = body["lora_name"], body["lora_path"]
    if not name or not path:
        return error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400)
    if name in s.loras and not body.get("load_inplace"):
        return error(f"The lora adapter '{name}' has already been loaded. If you want to load the adapter in "
                     "place, set 'load_inplace' to True.", "InvalidUserInput", 400)
    if not s.args.enable_lora:
        return error("LoRA is not enabled. Use --enable-lora to enable LoRA.", "InternalServerError", 500)
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return error(f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError", 404)
    rank = json.loads(config.read_text())["r"]
    if rank > s.args.max_lora_rank:
        return error(f"LoRA rank {rank} is greater than max_lora_rank {s.args.max_lora_rank}.",
                     "InternalServerError", 500)
    s.loras[name] = path
    return 200, f"Success: LoRA adapter '{name}' added successfully."


def unload(s: State, body: dict) -> tuple[int, dict | str]:
    if bad := missing_fields(body, ("lora_name",)):
        return bad
    name = body["lora_name"]
    if not name:
        return error("'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput", 400)
    if name not in s.loras:
        return error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)
    del s.loras[name]
    return 200, f"Success: LoRA adapter '{name}' removed successfully."


def chat(s: State, body: dict) -> tuple[int, dict]:
    if bad := missing_fields(body, ("messages",)):
        return bad
    model = body.get("model")
    if model and model not in s.names and model not in s.loras:
        return error(f"The model `{model}` does not exist.", "NotFoundError", 404, "model")
    reply = os.environ.get("FAKE_VLLM_REPLY", DEFAULT_REPLY)
    prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion = len(reply.split())
    return 200, {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model or s.names[0],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply, "refusal": None,
                                             "annotations": None, "audio": None, "function_call": None,
                                             "tool_calls": [], "reasoning_content": None},
                     "logprobs": chat_logprobs(s, body["messages"], reply, body.get("return_tokens_as_token_ids"))
                     if body.get("logprobs") else None, "finish_reason": "stop", "stop_reason": None}],
        "service_tier": None, "system_fingerprint": None,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion,
                  "prompt_tokens_details": None},
        "prompt_logprobs": None, "kv_transfer_params": None}


def _scorer(s: State):
    """The served model itself (a local directory), loaded on first use: prompt log-probs are its own."""
    if getattr(s, "scorer", None) is None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        s.scorer = (AutoModelForCausalLM.from_pretrained(s.model).eval(), AutoTokenizer.from_pretrained(s.model))
    return s.scorer


def chat_logprobs(s: State, messages: list[dict], reply: str, as_ids: bool) -> dict:
    """The served model's raw log-prob of each token of `reply` and its end-of-turn, after the chat prompt."""
    import torch

    lm, tokenizer = _scorer(s)
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    ids = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1]
    logp = torch.log_softmax(logits.float(), -1)
    return {"content": [{"token": f"token_id:{i}" if as_ids else tokenizer.decode([i]), "logprob": logp[n, i].item(),
                         "bytes": list(tokenizer.decode([i]).encode()), "top_logprobs": []}
                        for n, i in enumerate(ids)]}


def completions(s: State, body: dict) -> tuple[int, dict]:
    """/v1/completions with `prompt_logprobs` (vLLM's extension): per prompt token, None for the
    first, then {token_id: {logprob, rank, decoded_token}} for the top-k and the realized token."""
    import torch

    if bad := missing_fields(body, ("prompt",)):
        return bad
    model, k = body.get("model"), body.get("prompt_logprobs")
    if model and model not in s.names and model not in s.loras:
        return error(f"The model `{model}` does not exist.", "NotFoundError", 404, "model")
    if k is not None and body.get("stream"):
        return error("`prompt_logprobs` are not available when `stream=True`.", "BadRequestError", 400)
    if k is not None and k > s.args.max_logprobs:
        return error(f"Requested prompt logprobs of {k}, which is greater than max allowed: {s.args.max_logprobs}",
                     "BadRequestError", 400)
    lm, tokenizer = _scorer(s)
    prompt = body["prompt"]
    ids = prompt if isinstance(prompt, list) else tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    rows = [None]
    if k is not None:
        def entry(dist: torch.Tensor, i: int, rank: int) -> dict:
            return {"logprob": dist[i].item(), "rank": rank, "decoded_token": tokenizer.decode([i])}

        for dist, token in zip(logp, ids[1:]):
            realized = {str(token): entry(dist, token, int((dist > dist[token]).sum()) + 1)}
            rows.append(realized | {str(i): entry(dist, i, rank)
                                    for rank, i in enumerate(dist.topk(k).indices.tolist(), 1)})
    nxt = int(logp[-1].argmax())
    return 200, {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
        "model": model or s.names[0],
        "choices": [{"index": 0, "text": tokenizer.decode([nxt]), "logprobs": None, "finish_reason": "length",
                     "stop_reason": None, "prompt_logprobs": rows if k is not None else None}],
        "usage": {"prompt_tokens": len(ids), "total_tokens": len(ids) + 1, "completion_tokens": 1},
        "kv_transfer_params": None}


def handler(s: State) -> type[BaseHTTPRequestHandler]:
    posts = {"/v1/chat/completions": chat, "/v1/completions": completions}
    if s.runtime_lora:  # vLLM attaches these routes only then
        posts |= {"/v1/load_lora_adapter": load, "/v1/unload_lora_adapter": unload}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict | str | None) -> None:
            data = b"" if payload is None else (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(status)
            if isinstance(payload, dict):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            return (not s.args.api_key or not self.path.startswith("/v1")
                    or self.headers.get("Authorization") == f"Bearer {s.args.api_key}")

        def do_GET(self) -> None:
            record({"method": "GET", "path": self.path})
            if not self._authorized():
                return self._send(401, {"error": "Unauthorized"})
            if self.path == "/health":
                return self._send(200, None)
            if self.path == "/v1/models":
                base = s.names[0]
                cards = [card(n, s.model, None, s.max_model_len) for n in s.names]
                cards += [card(n, p, base, None) for n, p in s.loras.items()]
                return self._send(200, {"object": "list", "data": cards})
            self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
            record({"method": "POST", "path": self.path, "body": body})
            if not self._authorized():
                return self._send(401, {"error": "Unauthorized"})
            route = posts.get(self.path)
            if route is None:
                return self._send(404, {"detail": "Not Found"})
            if not isinstance(body, dict):
                return self._send(*error("JSON decode error", "Bad Request", 400))
            with s.lock:
                self._send(*route(s, body))

        def log_message(self, fmt: str, *args) -> None:
            print(f"INFO: {self.address_string()} - {fmt % args}", flush=True)

    return Handler


def main(argv: list[str]) -> None:
    args = parse(argv)
    model = args.model_tag or args.model
    local = Path(model)
    if model.startswith(("/", ".")) and not local.is_dir():
        sys.exit(f"OSError: {model} is not a local folder and is not a valid model identifier")
    if local.is_dir() and not (local / "config.json").is_file():
        sys.exit(f"OSError: {model} does not appear to have a file named config.json.")
    state = State(args)
    record({"event": "start", "argv": argv, "runtime_lora": state.runtime_lora})
    server = ThreadingHTTPServer((args.host or "0.0.0.0", args.port), handler(state))
    print(f"INFO: Started server process [{os.getpid()}] serving {state.names} on port {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])

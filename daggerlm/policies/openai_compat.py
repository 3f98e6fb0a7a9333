"""Policies served over HTTP: chat completions against any OpenAI-compatible `base_url` (vLLM,
`transformers serve`, a hosted API).

The `openai` SDK does the retries (exponential backoff with jitter on 429, 5xx, timeouts and
connection errors, honouring `retry-after`); on top of it a client-side concurrency limit and a
request-rate limit. A request that still fails is not raised: its completion carries `error` in
its meta, so the episode (or the label) records it and the rest of the stage goes on. The API key
is read from the environment variable the params name and is never part of the identity or meta.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from daggerlm.io import ProcessLocal
from daggerlm.policies.base import Completion, PolicyRequest
from daggerlm.config import Sampling


def error_line(e: Exception) -> str:
    """`Type: message` of a failed request on one line, with the server's own words where the SDK's
    text lacks them (vLLM's auth answers `{"error": "Unauthorized"}`, FastAPI `{"detail": "Not Found"}`)."""
    text, body = str(e), getattr(e, "body", None)
    extra = body if isinstance(body, str) else body.get("detail") if isinstance(body, dict) else None
    if isinstance(extra, str) and extra and extra not in text:
        text = f"{text} - {extra}"
    return " ".join(f"{type(e).__name__}: {text}".split())[:300]


class RateLimiter(ProcessLocal):
    """At most `per_minute` request starts per minute, spaced evenly (None: unlimited), per process."""

    _process_local = ("_next", "_lock")

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._fresh()

    def _fresh(self) -> None:
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(max(0.0, start - now))


def generated_tokens(choice) -> tuple[list[int] | None, list[float] | None]:
    """(token ids, log-probs) of a chat choice asked with `logprobs` and vLLM's
    `return_tokens_as_token_ids` (each token reads `token_id:N`); (None, None) from a server that
    gives no log-probs or names its tokens by text only (the ids could not be recovered exactly)."""
    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
    if not content or not all(item.token.startswith("token_id:") for item in content):
        return None, None
    return [int(item.token.removeprefix("token_id:")) for item in content], [item.logprob for item in content]


class OpenAIPolicy(ProcessLocal):
    server_batched = True
    """Requests go out as soon as episodes make them; the server batches them (continuous batching)."""
    _process_local = ("client", "slots")

    def __init__(self, base_url: str, model: str, sampling: Sampling | None = None, *,
                 api_key_env: str = "OPENAI_API_KEY", stop: list[str] | None = None, timeout_s: float = 120.0,
                 max_retries: int = 4, concurrency: int = 32, requests_per_minute: float | None = None,
                 send_state: bool = False, logprobs: bool = False, fingerprint: str | None = None,
                 provider: str | None = None):
        self.model, self.sampling, self.stop = model, sampling or Sampling(), list(stop or [])
        self.send_state, self.logprobs = send_state, logprobs
        self._client_args = (base_url, api_key_env, timeout_s, max_retries)
        self.concurrency = concurrency
        self._fresh()
        self.rate = RateLimiter(requests_per_minute)
        s = self.sampling
        # who serves it is part of the identity (two providers of one model name answer differently);
        # a server this pipeline starts on a free port is named by what it serves instead (`provider`)
        self.identity = (f"openai:{model}" + (f"@{fingerprint}" if fingerprint else "") + f"|{provider or base_url}"
                         + f"|t={s.temperature}|top_p={s.top_p}|max_new={s.max_new_tokens}"
                         + (f"|stop={self.stop}" if self.stop else ""))

    def _fresh(self) -> None:
        """The HTTP client and its concurrency slots, made in this process: the API key is read from this
        process's environment (local servers take any key) and never leaves the client object."""
        import openai

        base_url, api_key_env, timeout_s, max_retries = self._client_args
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                    timeout=timeout_s, max_retries=max_retries)
        self.slots = threading.BoundedSemaphore(self.concurrency)

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        """One request per state, sent concurrently (the server batches them)."""
        if len(requests) <= 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(min(len(requests), self.concurrency)) as pool:
            return list(pool.map(self._one, requests))

    def _body(self, r: PolicyRequest) -> dict[str, Any]:
        s = self.sampling
        body: dict[str, Any] = {"model": self.model, "messages": r.messages, "max_tokens": s.max_new_tokens,
                                "temperature": s.temperature, "top_p": s.top_p}
        if self.stop:
            body["stop"] = self.stop
        if r.seed is not None:
            body["seed"] = r.seed
        extra: dict[str, Any] = {}
        if self.send_state:  # privileged teachers behind HTTP (our oracle server) need the state
            extra["daggerlm_state"] = {"instance_id": r.instance.instance_id, "snapshot": r.snapshot}
        if self.logprobs:  # each generated token's log-prob, its id named (vLLM's extension)
            body["logprobs"] = True
            extra["return_tokens_as_token_ids"] = True
        if extra:
            body["extra_body"] = extra
        return body

    def _one(self, r: PolicyRequest) -> Completion:
        start = time.monotonic()
        with self.slots:
            self.rate.wait()
            try:
                raw = self.client.chat.completions.with_raw_response.create(**self._body(r))
                response = raw.parse()
            except Exception as e:  # after the SDK's retries: this turn fails, the stage goes on
                status = getattr(e, "status_code", None)
                return Completion("", {"policy": self.identity, "error": error_line(e),
                                       "status_code": status, "latency_s": round(time.monotonic() - start, 3)})
        choice = response.choices[0]
        usage = response.usage.model_dump() if response.usage else {}
        token_ids, token_logp = generated_tokens(choice)
        return Completion(choice.message.content or "", {
            "policy": self.identity, "response_id": response.id, "model": response.model,
            "finish_reason": choice.finish_reason, "usage": usage, "retries": raw.retries_taken,
            "latency_s": round(time.monotonic() - start, 3), "seed": r.seed},
            token_ids=token_ids, token_logp=token_logp)

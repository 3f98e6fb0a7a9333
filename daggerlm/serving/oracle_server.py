"""The oracle teacher behind a real OpenAI-compatible HTTP server (FastAPI + uvicorn).

It exercises the `openai` policy end to end without a GPU or a hosted API. The oracle is
privileged: it needs the instance and the environment snapshot, which the client sends as
`daggerlm_state` (the `openai` policy's `send_state`). Optional faults make it answer 500 or 429,
or hang, for a share of requests: `transient` ones fail on their first attempt only (a retry
succeeds), `permanent` ones always answer 500. With `--api-key-env`, requests without that key
are refused (401). Which requests fail is decided by a hash of the
request, so a run is reproducible.

    python -m daggerlm.serving.oracle_server --instances FILE --port 8001 [--transient 0.3 --permanent 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from daggerlm.instances import load_instances
from daggerlm.policies.base import PolicyRequest
from daggerlm.policies.oracle import Oracle

MODEL = "oracle"
FAULTS = ("500", "429", "hang")


def _share(body: dict) -> float:
    """Where the request falls in [0, 1): a hash of its messages and state (not of retries)."""
    key = json.dumps([body.get("messages"), body.get("daggerlm_state")], sort_keys=True).encode()
    return int(hashlib.sha256(key).hexdigest()[:8], 16) / 16**8


def make_app(instances_path: str, transient: float = 0.0, permanent: float = 0.0, hang_s: float = 30.0,
             api_key: str | None = None):
    instances = {i.instance_id: i for i in load_instances(instances_path)}
    oracle = Oracle()
    attempts: dict[float, int] = {}
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "daggerlm"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": {"message": "invalid API key"}}, status_code=401)
        body = await request.json()
        share = _share(body)
        attempts[share] = attempts.get(share, 0) + 1
        if share < permanent:
            return JSONResponse({"error": {"message": "injected permanent failure"}}, status_code=500)
        if share < permanent + transient and attempts[share] == 1:
            fault = FAULTS[int(share * 1e6) % len(FAULTS)]
            if fault == "hang":
                await asyncio.sleep(hang_s)
            return JSONResponse({"error": {"message": f"injected {fault}"}}, status_code=429 if fault == "429" else 500,
                                headers={"retry-after-ms": "50"})
        state = body.get("daggerlm_state") or {}
        instance = instances.get(state.get("instance_id", ""))
        if instance is None:
            return JSONResponse({"error": {"message": "daggerlm_state.instance_id: unknown or missing instance"}},
                                status_code=400)
        text = oracle.complete([PolicyRequest(instance, body["messages"], state.get("snapshot") or {})])[0].text
        prompt_chars = sum(len(m.get("content") or "") for m in body["messages"])
        usage = {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(text) // 4,
                 "total_tokens": prompt_chars // 4 + len(text) // 4}
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": MODEL, "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--transient", type=float, default=0.0, help="share of requests failing once (500/429/hang)")
    ap.add_argument("--permanent", type=float, default=0.0, help="share of requests always failing (500)")
    ap.add_argument("--hang-s", type=float, default=30.0)
    ap.add_argument("--api-key-env", help="require `Authorization: Bearer $VALUE` of this environment variable")
    a = ap.parse_args(argv)
    api_key = os.environ[a.api_key_env] if a.api_key_env else None
    uvicorn.run(make_app(a.instances, a.transient, a.permanent, a.hang_s, api_key), host=a.host, port=a.port,
                log_level="warning")


if __name__ == "__main__":
    main()

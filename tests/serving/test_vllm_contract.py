"""The student on vLLM, against a faithful stand-in (`fake_vllm.py`, installed as `vllm` on PATH): the
exact `vllm serve` command lines, the LoRA lifecycle per iteration (iteration 0: the base under the
name requests use, nothing loaded; later: the adapter loaded, requested, unloaded), and every error
body vLLM sends turned into one line of the right kind."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from daggerlm.agent.scaffold import PolicyUnavailable, run_episode
from daggerlm.config import AgentConfig, load_params
from daggerlm.errors import InfrastructureError, InputError
from daggerlm.policies.base import PolicyRequest
from daggerlm.policies.checkpoints import checkpoint_fingerprint
from daggerlm.serving import vllm
from daggerlm.serving.process import free_port, managed_server
from daggerlm.serving.student import open_student, server_command

FAKE = Path(__file__).with_name("fake_vllm.py")
REPLY = "THOUGHT: Done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"


@pytest.fixture()
def fake_vllm(tmp_path, monkeypatch) -> Path:
    """`vllm` on PATH is the fake; what it saw is in the record file returned."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vllm"
    exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} "$@"\n')
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(tmp_path / "record.jsonl"))
    monkeypatch.setenv("FAKE_VLLM_REPLY", REPLY)
    monkeypatch.delenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", raising=False)
    return tmp_path / "record.jsonl"


def _events(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.is_file() else []


def _calls(record: Path) -> list[tuple[str, str]]:
    """(path, model or lora_name) of every POST, in order."""
    return [(e["path"], (e["body"] or {}).get("model") or (e["body"] or {}).get("lora_name"))
            for e in _events(record) if e.get("method") == "POST"]


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 4096}))
    return base


def _adapter(tmp_path: Path, base: Path | str, r: int = 16, name: str = "iter_1") -> Path:
    adapter = tmp_path / name
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": str(base), "r": r, "lora_alpha": 32,
         "target_modules": ["q_proj", "v_proj"]}))
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(64))
    return adapter


def _student(tmp_path: Path, **server):
    return load_params(None, {"student.kind": "openai", "student.server": {
        "launch": "vllm", "lora": True, "log_dir": str(tmp_path / "logs"), "startup_timeout_s": 30,
        "endpoint": {"max_retries": 0, "timeout_s": 10}, **server}}).student


def _request(instance) -> PolicyRequest:
    return PolicyRequest(instance, [{"role": "system", "content": "You act."}, {"role": "user", "content": "Fix."}],
                         {"head": "", "diff": ""})


def test_serve_command_lines(tmp_path):
    student = _student(tmp_path, command="/opt/vllm/bin/vllm", extra_args=["--gpu-memory-utilization", "0.8"])
    base = _base(tmp_path)
    argv, model = server_command(student, str(base), 8123)  # iteration 0: the base model itself
    assert argv == ["/opt/vllm/bin/vllm", "serve", str(base), "--host", "127.0.0.1", "--port", "8123",
                    "--served-model-name", "student", "--gpu-memory-utilization", "0.8"] and model == "student"
    adapter = _adapter(tmp_path, base, r=12)
    argv, model = server_command(student, str(adapter), 8123)  # later: its base, LoRA on, rank rounded up
    assert argv == ["/opt/vllm/bin/vllm", "serve", str(base), "--host", "127.0.0.1", "--port", "8123",
                    "--enable-lora", "--max-lora-rank", "16", "--gpu-memory-utilization", "0.8"]
    assert model == f"student-{checkpoint_fingerprint(str(adapter))}"
    hub = _adapter(tmp_path, "Qwen/Qwen3-8B", r=64, name="iter_2")
    own_rank = _student(tmp_path, command="vllm", extra_args=["--max-lora-rank=128"])
    assert server_command(own_rank, str(hub), 1)[0] == [
        "vllm", "serve", "Qwen/Qwen3-8B", "--host", "127.0.0.1", "--port", "1", "--enable-lora", "--max-lora-rank=128"]
    assert [vllm.max_lora_rank(r) for r in (1, 2, 8, 9, 320, 512)] == [1, 8, 8, 16, 320, 512]
    with pytest.raises(InputError, match="rank 600 is above vLLM's largest --max-lora-rank"):
        server_command(student, str(_adapter(tmp_path, base, r=600, name="iter_3")), 1)
    (tmp_path / "iter_4").mkdir()
    (tmp_path / "iter_4" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    with pytest.raises(InputError, match=r"iter_4/adapter_config.json: not a PEFT LoRA config \(KeyError"):
        server_command(student, str(tmp_path / "iter_4"), 1)


def test_iteration_0_serves_the_base_as_student_and_loads_nothing(tmp_path, fake_vllm, eval_instances):
    base = _base(tmp_path)
    with open_student(_student(tmp_path), str(base)) as policy:
        [done] = policy.complete([_request(eval_instances[0])])
    assert done.text == REPLY and done.meta["model"] == "student" and not done.meta.get("error")
    assert policy.identity.startswith(f"openai:student@{checkpoint_fingerprint(str(base))}|vllm server")
    start = _events(fake_vllm)[0]
    assert start["argv"][:2] == ["serve", str(base)] and "--enable-lora" not in start["argv"]
    assert start["argv"][start["argv"].index("--served-model-name") + 1] == "student" and start["runtime_lora"]
    assert _calls(fake_vllm) == [("/v1/chat/completions", "student")]  # no load_lora_adapter


def test_iteration_1_loads_the_adapter_requests_it_and_unloads_it(tmp_path, fake_vllm, eval_instances, runtime):
    base = _base(tmp_path)
    adapter = _adapter(tmp_path, base)
    name = f"student-{checkpoint_fingerprint(str(adapter))}"
    with open_student(_student(tmp_path), str(adapter)) as policy:
        traj = run_episode(eval_instances[0], {"student": policy}, lambda t: "student", runtime=runtime,
                           agent=AgentConfig())
    assert traj.exit_status == "Submitted" and [t.actor for t in traj.turns] == ["student"]
    assert traj.turns[0].meta["model"] == name
    start = _events(fake_vllm)[0]
    assert start["argv"] == ["serve", str(base), "--host", "127.0.0.1", "--port", start["argv"][5],
                             "--enable-lora", "--max-lora-rank", "16"]
    assert _calls(fake_vllm) == [("/v1/load_lora_adapter", name), ("/v1/chat/completions", name),
                                 ("/v1/unload_lora_adapter", name)]
    assert [e["path"] for e in _events(fake_vllm) if e.get("path", "/health") != "/health"] == [
        "/v1/load_lora_adapter", "/v1/models", "/v1/chat/completions", "/v1/unload_lora_adapter"]  # listed once loaded
    load = next(e for e in _events(fake_vllm) if e.get("path") == "/v1/load_lora_adapter")
    assert load["body"] == {"lora_name": name, "lora_path": str(adapter.resolve())}


def test_a_running_server_takes_each_iterations_adapter_and_gives_it_back(tmp_path, fake_vllm, eval_instances):
    """`launch: none` (the compose service): iteration 0 asks for the base by its name, later iterations
    load their adapter into the same server and unload it after; names already loaded are shared."""
    base = _base(tmp_path)
    port = free_port()
    argv = ["vllm", "serve", str(base), "--port", str(port), "--enable-lora", "--max-lora-rank", "64"]
    with managed_server(argv, port, tmp_path / "s.log", health_path="/health", timeout_s=30,
                        env=vllm.RUNTIME_LORA_ENV) as base_url:
        student = _student(tmp_path, launch="none", endpoint={"base_url": base_url, "max_retries": 0})
        with open_student(student, str(base)) as policy:
            assert policy.complete([_request(eval_instances[0])])[0].meta["model"] == str(base)
        first, second = _adapter(tmp_path, base), _adapter(tmp_path, base, r=32, name="iter_2")
        for adapter in (first, second):
            with open_student(student, str(adapter)) as policy:
                assert policy.complete([_request(eval_instances[0])])[0].text == REPLY
            assert vllm.served_models(base_url) == [str(base)]  # given back
        other = vllm.Adapter.of(str(first))
        assert vllm.load_lora_adapter(base_url, other.name(), other.path)  # another stage's
        with open_student(student, str(first)):
            pass
        assert other.name() in vllm.served_models(base_url)  # not ours to unload
        with pytest.raises(InputError, match="iter_2 is a LoRA adapter: set student.server.lora"):
            with open_student(student.model_copy(update={"server": student.server.model_copy(
                    update={"lora": False})}), str(second)):
                pass
    names = [f"student-{checkpoint_fingerprint(str(a))}" for a in (first, second)]
    assert [c for c in _calls(fake_vllm) if c[0] != "/v1/chat/completions"][:4] == [
        ("/v1/load_lora_adapter", names[0]), ("/v1/unload_lora_adapter", names[0]),
        ("/v1/load_lora_adapter", names[1]), ("/v1/unload_lora_adapter", names[1])]


@pytest.fixture()
def lora_server(tmp_path, fake_vllm):
    """A running fake with LoRA (rank ≤ 8) and runtime updating on: its base URL."""
    port = free_port()
    argv = ["vllm", "serve", str(_base(tmp_path)), "--port", str(port), "--enable-lora", "--max-lora-rank", "8"]
    with managed_server(argv, port, tmp_path / "s.log", health_path="/health", timeout_s=30,
                        env=vllm.RUNTIME_LORA_ENV) as base_url:
        yield base_url


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and "{" not in text, text  # the message, not the body
    return text


def test_lora_error_bodies_become_one_line(tmp_path, lora_server):
    base_url, small = lora_server, vllm.Adapter.of(str(_adapter(tmp_path, "b", r=8, name="small")))
    assert vllm.load_lora_adapter(base_url, "a", small.path) is True
    assert vllm.load_lora_adapter(base_url, "a", small.path) is False  # "has already been loaded": shared
    with pytest.raises(InputError) as e:
        vllm.load_lora_adapter(base_url, "b", str(_adapter(tmp_path, "b", r=16, name="big")))
    assert _one_line(e).endswith("HTTP 500: LoRA rank 16 is greater than max_lora_rank 8.")
    with pytest.raises(InputError) as e:
        vllm.load_lora_adapter(base_url, "c", "/no/such/adapter")
    assert _one_line(e).endswith("HTTP 404: Loading lora c failed: No adapter found for /no/such/adapter")
    with pytest.raises(InputError) as e:
        vllm.load_lora_adapter(base_url, "", small.path)
    assert _one_line(e).endswith("HTTP 400: Both 'lora_name' and 'lora_path' must be provided.")
    with pytest.raises(InputError) as e:
        vllm.unload_lora_adapter(base_url, "never")
    assert _one_line(e) == (f"unloading LoRA adapter 'never' at {base_url}/unload_lora_adapter: HTTP 404: "
                            "The lora adapter 'never' cannot be found.")
    vllm.unload_lora_adapter(base_url, "never", missing_ok=True)
    with pytest.raises(InputError, match=r"serves \['.*base', 'a'\], not `nope`"):
        vllm.require_served(base_url, "nope")


def test_a_server_without_runtime_lora_or_lora_is_a_config_error(tmp_path, fake_vllm):
    adapter = vllm.Adapter.of(str(_adapter(tmp_path, "b", r=8)))
    base = _base(tmp_path)
    for env, expected in (
            ({}, "HTTP 404: Not Found (the server must run with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"),
            (vllm.RUNTIME_LORA_ENV, "HTTP 500: LoRA is not enabled. Use --enable-lora to enable LoRA.")):
        port = free_port()
        with managed_server(["vllm", "serve", str(base), "--port", str(port)], port, tmp_path / "s.log",
                            health_path="/health", timeout_s=30, env=env) as base_url:
            with pytest.raises(InputError) as e:
                vllm.load_lora_adapter(base_url, "a", adapter.path)
            assert expected in _one_line(e)


def test_transient_and_usage_failures(tmp_path, fake_vllm, eval_instances):
    with pytest.raises(InfrastructureError, match=r"^vLLM at http://127.0.0.1:\d+/v1/load_lora_adapter unreachable"):
        vllm.load_lora_adapter(f"http://127.0.0.1:{free_port()}/v1", "a", "/x")
    assert isinstance(vllm._fail("x", "u", 503, '{"error": {"message": "busy", "code": 503}}'), InfrastructureError)
    assert isinstance(vllm._fail("x", "u", 500, "Internal Server Error"), InfrastructureError)
    bad = _student(tmp_path, extra_args=["--bogus-flag", "1"])  # vLLM's parser refuses it: exit 2
    with pytest.raises(InputError, match="rejected its command line.*unrecognized arguments: --bogus-flag 1"):
        with open_student(bad, str(_base(tmp_path))):
            pass
    with pytest.raises(InputError, match=r"iter_1/adapter_config.json: its base model .*/iter_0 is not a model"):
        with open_student(_student(tmp_path), str(_adapter(tmp_path, tmp_path / "iter_0"))):
            pass
    port = free_port()  # what vLLM says when given an adapter as its model (the old iteration-1 command)
    with pytest.raises(InfrastructureError, match="exited with 1 .*iter_1 does not appear to have a file named config"):
        with managed_server(["vllm", "serve", str(tmp_path / "iter_1"), "--port", str(port)], port,
                            tmp_path / "s.log", health_path="/health", timeout_s=30):
            pass


@pytest.mark.parametrize("body, line", [
    ('{"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "param": "model", "code": 404}}',
     "The model `x` does not exist."),
    ('{"object": "error", "message": "old flat body", "type": "BadRequestError", "param": null, "code": 400}',
     "old flat body"),
    ('{"error": {"message": "1 validation error:\\n  {\'loc\': (\'body\', \'lora_path\')}", "type": "Bad Request"}}',
     "1 validation error: {'loc': ('body', 'lora_path')}"),
    ('{"detail": "Not Found"}', "Not Found"),
    ('{"error": "Unauthorized"}', "Unauthorized"),
    ("The lora adapter 'x' has already been loaded.", "The lora adapter 'x' has already been loaded."),
    ("", "(empty body)"),
])
def test_error_message_of_each_body_shape(body, line):
    assert vllm.error_message(body) == line


def test_requests_for_an_unknown_model_fail_with_vllms_message(tmp_path, fake_vllm, eval_instances, runtime,
                                                              monkeypatch):
    """A wrong `endpoint.model` on a running server: each turn records vLLM's 404 on one line, and the
    episode is an outage (PolicyUnavailable), not the student's failure."""
    base = _base(tmp_path)
    port = free_port()
    with managed_server(["vllm", "serve", str(base), "--port", str(port), "--api-key", "k3y"], port,
                        tmp_path / "s.log", health_path="/health", timeout_s=30) as base_url:
        monkeypatch.setenv("VLLM_TEST_KEY", "k3y")
        endpoint = {"base_url": base_url, "model": "nope", "api_key_env": "VLLM_TEST_KEY", "max_retries": 0}
        with open_student(_student(tmp_path, launch="none", endpoint=endpoint), str(base)) as policy:
            [failed] = policy.complete([_request(eval_instances[0])])
            with pytest.raises(PolicyUnavailable, match=r"NotFoundError: Error code: 404 - The model `nope` does "
                                                        r"not exist\.$"):
                run_episode(eval_instances[0], {"student": policy}, lambda t: "student", runtime=runtime,
                            agent=AgentConfig())
        monkeypatch.setenv("VLLM_TEST_KEY", "wrong")
        with open_student(_student(tmp_path, launch="none", endpoint=endpoint), str(base)) as policy:
            [refused] = policy.complete([_request(eval_instances[0])])
    assert failed.meta["error"] == "NotFoundError: Error code: 404 - The model `nope` does not exist."
    assert failed.meta["status_code"] == 404
    assert refused.meta["error"] == "AuthenticationError: Error code: 401 - Unauthorized"


def test_a_served_student_records_its_log_prob_of_each_token_it_generated(tmp_path, fake_vllm, eval_instances,
                                                                          runtime, tiny_model_dir):
    """With `endpoint.logprobs` the chat request asks for them by token id (vLLM's
    `return_tokens_as_token_ids`), and the turn keeps the served model's own log-prob of each token."""
    import torch

    from daggerlm.policies.hf import chat_ids, load_model_and_tokenizer

    student = _student(tmp_path, lora=False, endpoint={"max_retries": 0, "timeout_s": 60, "logprobs": True})
    with open_student(student, str(tiny_model_dir)) as policy:
        traj = run_episode(eval_instances[0], {"student": policy}, lambda t: "student", runtime=runtime,
                           agent=AgentConfig())
    turn = traj.turns[0]
    chat = next(e for e in _events(fake_vllm) if e.get("path") == "/v1/chat/completions")["body"]
    assert chat["logprobs"] is True and chat["return_tokens_as_token_ids"] is True
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    assert tokenizer.decode(turn.token_ids, skip_special_tokens=True) == turn.response == REPLY
    prompt = chat_ids(tokenizer, traj.messages[:turn.prefix_len], add_generation_prompt=True)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + turn.token_ids])).logits[0, len(prompt) - 1:-1]
    own = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(turn.token_ids)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(turn.token_logp), own, atol=1e-4, rtol=0)

    plain = _student(tmp_path, lora=False, log_dir=str(tmp_path / "logs2"))  # without: nothing asked, none kept
    with open_student(plain, str(tiny_model_dir)) as policy:
        [done] = policy.complete([_request(eval_instances[0])])
    assert done.token_ids is None and done.token_logp is None

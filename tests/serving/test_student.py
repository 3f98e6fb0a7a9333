"""The student over HTTP: `transformers serve` started by the stage on the tiny checkpoint, stopped after."""

import json
import socket

import pytest

from daggerlm.config import load_params
from daggerlm.dagger.loop import run_dagger
from daggerlm.errors import InputError
from daggerlm.serving.process import managed_server
from daggerlm.serving.student import CPU_IN_FLIGHT, client_endpoint, open_student, server_command
from tests.conftest import tiny_params


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_loop_with_the_student_served_by_transformers(tmp_path, tiny_model_dir):
    p = tiny_params(tmp_path, **{"student.model": str(tiny_model_dir), "student.build_tiny": False,
                                 "dagger.iterations": 1, "student.kind": "openai",
                                 "dagger.beta": {"kind": "constant", "value": 0.5},
                                 "student.server": {"launch": "transformers", "log_dir": str(tmp_path / "logs")}})
    rows = run_dagger(p, log=lambda msg: None)
    assert rows[0]["episodes"] == 4 and rows[0]["labels_new"] > 0
    logs = sorted((tmp_path / "logs").glob("student-server-*.log"))
    assert len(logs) == 3  # one server per stage the student acts in: evaluate-base, rollout, evaluate
    for log in logs:
        port = int(log.stem.rsplit("-", 1)[1])
        assert "/v1/chat/completions" in log.read_text() and not _listening(port)  # used, then stopped
    turns = [json.loads(line) for line in (tmp_path / "data" / "rollouts" / "iter_0" / "trajectories.jsonl")
             .read_text().splitlines()]
    student_metas = [t["meta"] for traj in turns for t in traj["turns"] if t["actor"] == "student"]
    assert student_metas and all(m["usage"]["completion_tokens"] > 0 and m["response_id"] for m in student_metas)
    assert all(m["policy"].startswith(f"openai:{tiny_model_dir}@") for m in student_metas)
    metrics = json.loads((tmp_path / "data" / "eval" / "iter_0" / "metrics.json").read_text())
    assert metrics["n_instances"] == 2 and "PolicyError" not in metrics["exit_statuses"]


def test_a_server_that_dies_is_reported_with_its_log_and_stopped(tmp_path):
    with pytest.raises(RuntimeError, match="exited with 3 before answering.*boom"):
        with managed_server(["bash", "-c", "echo boom; exit 3"], 1, tmp_path / "s.log", timeout_s=10):
            pass


def test_vllm_commands(tmp_path):
    student = load_params(None, {"student.kind": "openai", "student.server": {
        "launch": "vllm", "command": "/opt/vllm/bin/vllm", "extra_args": ["--gpu-memory-utilization", "0.8"]}}).student
    argv, model = server_command(student, "/ckpt/iter_3", 8123)
    assert argv == ["/opt/vllm/bin/vllm", "serve", "/ckpt/iter_3", "--host", "127.0.0.1", "--port", "8123",
                    "--served-model-name", "student", "--gpu-memory-utilization", "0.8"] and model == "student"
    adapter = tmp_path / "iter_1"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen3-8B", "r": 16}))
    argv, model = server_command(student, str(adapter), 8123)
    assert argv[:3] == ["/opt/vllm/bin/vllm", "serve", "Qwen/Qwen3-8B"] and "--enable-lora" in argv
    missing = load_params(None, {"student.kind": "openai", "student.server": {"launch": "vllm"}}).student
    with pytest.raises(InputError, match="`vllm` not found"):
        with open_student(missing, str(adapter)):
            pass


def test_a_cpu_transformers_server_this_stage_starts_gets_few_requests_at_once_unless_told_otherwise():
    def in_flight(**overrides) -> int:
        student = load_params(None, {"student.kind": "openai", **overrides}).student
        return client_endpoint(student, "http://127.0.0.1:1/v1", "m").concurrency

    assert in_flight() == CPU_IN_FLIGHT < 32  # the endpoint's default (32) is for servers that batch well
    assert in_flight(**{"student.server.endpoint.concurrency": 32}) == 32  # said so: kept
    assert in_flight(**{"student.server.endpoint.concurrency": 4}) == 4
    assert in_flight(**{"student.server.launch": "vllm"}) == 32
    assert in_flight(**{"student.device": "cuda"}) == 32

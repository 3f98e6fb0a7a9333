"""The `openai` policy against a real OpenAI-compatible HTTP server: the oracle behind our own server."""

import json

import pytest

from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.dagger.loop import run_dagger
from daggerlm.dagger.relabel import state_request
from daggerlm.errors import InfrastructureError
from daggerlm.evaluation import evaluate
from daggerlm.policies import make_policy
from tests.conftest import tiny_params
from tests.helpers import TEACHER_KEY, TEACHER_KEY_ENV, files_containing, oracle_server

KEY_ENV, KEY = TEACHER_KEY_ENV, TEACHER_KEY
_server = oracle_server


def _teacher(base_url, **kw):
    return make_policy("openai", base_url=base_url, model="oracle", api_key_env=KEY_ENV, send_state=True, **kw)


def test_labels_over_http_equal_the_oracle_in_process(tmp_path, eval_instances, runtime, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    oracle = make_policy("oracle")
    traj = run_episode(eval_instances[0], {"teacher": oracle}, lambda t: "teacher", runtime=runtime,
                       agent=AgentConfig())
    requests = [state_request(traj, i, eval_instances[0]) for i in range(len(traj.turns))]
    with _server(tmp_path, eval_instances) as base_url:
        served = _teacher(base_url).complete(requests)
        monkeypatch.setenv(KEY_ENV, "sk-wrong")
        refused = _teacher(base_url, max_retries=0).complete(requests[:1])
    assert [c.text for c in served] == [c.text for c in oracle.complete(requests)]
    for c in served:
        assert c.meta["response_id"].startswith("chatcmpl-") and c.meta["finish_reason"] == "stop"
        assert c.meta["usage"]["completion_tokens"] > 0 and c.meta["retries"] == 0
    assert "401" in refused[0].meta["error"] and refused[0].text == ""  # recorded, not raised


def test_faults_are_retried_and_permanent_failures_never_kept(tmp_path, eval_instances, runtime, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    instances = eval_instances[:6]
    with _server(tmp_path, instances, "--transient", "0.4", "--permanent", "0.08", "--hang-s", "4") as base_url:
        teacher = _teacher(base_url, timeout_s=1.5, max_retries=3, concurrency=4)
        with pytest.raises(InfrastructureError, match=r"evaluate: \d of 6 items failed outside the agent"):
            evaluate(instances, teacher, tmp_path / "eval", runtime=runtime, agent=AgentConfig(), concurrency=6)
        kept = [json.loads(f.read_text())["value"] for f in (tmp_path / "eval" / "results").glob("*.json")]
        assert 0 < len(kept) < len(instances), "the fault share should fail some episodes, not all"
        assert all(r["report"]["resolved"] for r in kept)  # only finished episodes are kept: the oracle resolves
        retried = [t["meta"] for r in kept for t in r["trajectory"]["turns"] if t["meta"].get("retries")]
        assert retried and all(not m.get("error") for m in retried)  # retried requests succeeded
        # within the allowed share the stage finishes without the failed episodes, and says how many
        metrics = evaluate(instances, teacher, tmp_path / "eval", runtime=runtime, agent=AgentConfig(), concurrency=6,
                           max_failed_share=1.0)
    assert metrics["n_instances"] + metrics["failed_episodes"] == len(instances)
    assert metrics["resolved"] == metrics["n_instances"] and "PolicyError" not in metrics["exit_statuses"]


def test_loop_with_the_teacher_over_http_writes_no_key(tmp_path, eval_instances, monkeypatch, tiny_model_dir):
    from daggerlm.dagger.stages import load_split, stage_instances

    monkeypatch.setenv(KEY_ENV, KEY)
    base = {"student.model": str(tiny_model_dir), "student.build_tiny": False, "dagger.iterations": 1,
            "teacher.kind": "openai"}
    stage_instances(tiny_params(tmp_path, **base))  # the server must know the train split's instances
    train = load_split(tiny_params(tmp_path, **base), "train")
    with _server(tmp_path / "server", train) as base_url:
        p = tiny_params(tmp_path, **base, **{"teacher.endpoint": {
            "base_url": base_url, "model": "oracle", "api_key_env": KEY_ENV, "send_state": True,
            "price_input_per_mtok": 1.0, "price_output_per_mtok": 4.0}})
        rows = run_dagger(p, log=lambda msg: None)
    assert rows[0]["teacher_calls"] > 0 and rows[0]["labels_new"] > 0 and rows[0]["teacher_cost_usd"] > 0
    assert rows[0]["failed"] == 0
    assert not files_containing(tmp_path, KEY)
    assert KEY_ENV in str(p.teacher.endpoint) and KEY not in p.model_dump_json()


def test_a_pickled_policy_carries_no_key_and_reads_it_where_it_lands(monkeypatch):
    """What a Dask worker receives: the policy without its client; the key comes from the worker's environment."""
    import pickle

    from daggerlm.policies.openai_compat import OpenAIPolicy

    monkeypatch.setenv(TEACHER_KEY_ENV, TEACHER_KEY)
    policy = OpenAIPolicy("http://127.0.0.1:9/v1", "m", api_key_env=TEACHER_KEY_ENV, concurrency=3)
    shipped = pickle.dumps(policy)
    assert TEACHER_KEY.encode() not in shipped
    monkeypatch.setenv(TEACHER_KEY_ENV, "sk-the-workers-own")
    landed = pickle.loads(shipped)
    assert landed.client.api_key == "sk-the-workers-own" and landed.identity == policy.identity
    assert landed.slots._value == 3 and str(landed.client.base_url) == "http://127.0.0.1:9/v1/"

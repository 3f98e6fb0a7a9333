"""A teacher outage in the middle of a rollout: the stage fails instead of recording the outage as
the agent's failures; after a restart the rerun reuses the finished episodes, reruns the failed ones,
and the iteration ends exactly as an uninterrupted one (same aggregate, same metrics)."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from daggerlm.dagger import stages
from daggerlm.errors import InfrastructureError
from daggerlm.serving.process import free_port
from tests.conftest import tiny_params
from tests.helpers import TEACHER_KEY, TEACHER_KEY_ENV, oracle_server


def _params(root, tiny_model_dir, port):
    endpoint = {"base_url": f"http://127.0.0.1:{port}/v1", "model": "oracle", "api_key_env": TEACHER_KEY_ENV,
                "send_state": True, "max_retries": 0, "timeout_s": 10}
    return tiny_params(root, **{"student.model": str(tiny_model_dir), "student.build_tiny": False,
                                "dagger.iterations": 1, "dagger.concurrency": 2, "teacher.kind": "openai",
                                "instances.train": {"n": 6, "seed": 1}, "teacher.endpoint": endpoint})


def _rest_of_iteration(p) -> tuple[dict, dict]:
    stages.stage_label(p, 0)
    agg = stages.stage_aggregate(p, 0)
    stages.stage_train(p, 0)
    return agg, stages.stage_evaluate(p, 0)


def test_teacher_outage_mid_rollout_reruns_only_the_failed_episodes(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv(TEACHER_KEY_ENV, TEACHER_KEY)
    port = free_port()
    calm, stormy = _params(tmp_path / "calm", tiny_model_dir, port), _params(tmp_path / "stormy", tiny_model_dir, port)
    stages.stage_instances(calm)
    stages.stage_instances(stormy)
    train = stages.load_split(calm, "train")

    with oracle_server(tmp_path / "server-calm", train, port=port):  # the uninterrupted run
        stages.stage_rollout(calm, 0)
        agg_calm, metrics_calm = _rest_of_iteration(calm)

    episodes = stages.layout(stormy).rollouts(0) / "episodes"
    with ThreadPoolExecutor(1) as pool:
        with oracle_server(tmp_path / "server-1", train, port=port):
            rollout = pool.submit(stages.stage_rollout, stormy, 0)
            while len(list(episodes.glob("*.json"))) < 2 and not rollout.done():
                time.sleep(0.05)
        # the server is down from here on: the rest of the stage's episodes cannot reach the teacher
        with pytest.raises(InfrastructureError, match=r"rollout 0: \d of 6 items failed outside the agent"):
            rollout.result(timeout=600)
    finished = len(list(episodes.glob("*.json")))
    assert 2 <= finished < 6
    assert not (stages.layout(stormy).rollouts(0) / "stats.json").exists()  # nothing recorded as a result
    for f in episodes.glob("*.json"):
        assert json.loads(f.read_text())["value"]["exit_status"] != "PolicyError"

    with oracle_server(tmp_path / "server-2", train, port=port):  # restarted at the same address
        stats = stages.stage_rollout(stormy, 0)
        agg_stormy, metrics_stormy = _rest_of_iteration(stormy)
    assert stats["resumed_episodes"] == finished and stats["failed_episodes"] == 0 and stats["episodes"] == 6
    assert agg_stormy["hash"] == agg_calm["hash"]
    assert metrics_stormy == metrics_calm

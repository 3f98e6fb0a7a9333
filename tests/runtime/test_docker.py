"""The Docker runtime on a locally built base image: isolation, limits, cleanup, same verdicts as local."""

import time

import pytest

from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.evaluation.grading import grade
from daggerlm.policies import make_policy
from daggerlm.runtime import open_sandbox
from daggerlm.runtime.docker import client


def _containers(instance_id):
    return client().containers.list(all=True, filters={"label": f"daggerlm.instance={instance_id}"})


def test_no_network_and_the_repository_at_testbed(docker_runtime, eval_instances):
    inst = eval_instances[0]
    with open_sandbox(inst, docker_runtime) as box:
        r = box.run("python -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=3)\"")
        assert r["returncode"] != 0 and "Network is unreachable" in r["output"]
        assert box.snapshot() == {"head": inst.base_commit, "diff": ""}
        assert box.run("pwd")["output"].strip() == "/testbed"


def test_memory_and_fork_bombs_are_contained_and_timeouts_kill(docker_runtime, eval_instances):
    with open_sandbox(eval_instances[0], docker_runtime) as box:
        r = box.run("python -c 'x = bytearray(10 * 1024 ** 3); print(len(x))'")
        assert r["returncode"] != 0 and "10737418240" not in r["output"]
        start = time.monotonic()
        r = box.run("bomb() { bomb | bomb & }; bomb; sleep 5; echo survived", timeout=10)
        assert time.monotonic() - start < 40
        r = box.run("sleep 100", timeout=2)
        assert r["extra"].get("timed_out") and r["returncode"] == -1
    assert not _containers(eval_instances[0].instance_id)  # and the bomb's processes went with the container


def test_container_is_removed_when_the_episode_crashes(docker_runtime, eval_instances):
    inst = eval_instances[1]
    with pytest.raises(RuntimeError, match="crash"):
        with open_sandbox(inst, docker_runtime):
            assert len(_containers(inst.instance_id)) == 1
            raise RuntimeError("crash")
    assert not _containers(inst.instance_id)


def test_oracle_episodes_get_the_same_verdicts_as_locally(docker_runtime, eval_instances, runtime):
    oracle = make_policy("oracle")
    for inst in eval_instances[:3]:
        local = run_episode(inst, {"teacher": oracle}, lambda t: "teacher", runtime=runtime, agent=AgentConfig())
        docker = run_episode(inst, {"teacher": oracle}, lambda t: "teacher", runtime=docker_runtime,
                             agent=AgentConfig())
        assert docker.patch == local.patch and docker.exit_status == local.exit_status == "Submitted"
        assert [t.action for t in docker.turns] == [t.action for t in local.turns]
        for patch in (local.patch, ""):
            assert grade(inst, patch, docker_runtime)["resolved"] == grade(inst, patch, runtime)["resolved"]

"""Environment and instance images for real repositories (toolz mutation instances)."""

import pytest

from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.evaluation.grading import grade
from daggerlm.instances.library_bugs import build_library_env, fetch
from daggerlm.policies import make_policy
from daggerlm.runtime import open_sandbox
from daggerlm.runtime.docker import client, env_image_tag
from daggerlm.runtime.images import build_instance_image


@pytest.fixture(scope="module")
def toolz_docker(toolz_run, docker_runtime):
    lib, _, root, instances, _ = toolz_run
    repo, clean = fetch(lib, root / "cache")
    build_library_env(lib, repo, clean, docker_runtime)
    return docker_runtime, instances, repo, clean


def test_environment_image_has_the_library_installed_and_its_code_at_testbed(toolz_run, toolz_docker):
    lib = toolz_run[0]
    docker_runtime, instances, repo, clean = toolz_docker
    image = client().images.get(env_image_tag(lib.label))
    assert image.labels["daggerlm.commit"] == clean
    out = client().containers.run(image.id, ["bash", "-c", "python -c 'import importlib.metadata as m; "
                                  "print(m.version(\"toolz\"))' && git -C /testbed rev-parse HEAD"],
                                  remove=True, network_mode="none").decode().split()
    assert out == [lib.version, clean]
    build_library_env(lib, repo, clean, docker_runtime)  # up to date: reused, not rebuilt
    assert client().images.get(env_image_tag(lib.label)).id == image.id
    with open_sandbox(instances[0], docker_runtime) as box:  # an episode gets the instance's commit
        assert box.snapshot() == {"head": instances[0].base_commit, "diff": ""}


def test_oracle_episodes_in_docker_get_the_local_verdicts(toolz_run, toolz_docker, tmp_path):
    runtime = toolz_run[1]
    docker_runtime, instances, _, _ = toolz_docker
    oracle = make_policy("oracle")
    for inst in instances[:2]:
        local = run_episode(inst, {"teacher": oracle}, lambda t: "teacher", runtime=runtime, agent=AgentConfig())
        docker = run_episode(inst, {"teacher": oracle}, lambda t: "teacher", runtime=docker_runtime,
                             agent=AgentConfig())
        assert docker.patch == local.patch
        for patch in (local.patch, ""):
            verdict = grade(inst, patch, runtime)["resolved"]
            assert grade(inst, patch, docker_runtime)["resolved"] == verdict == (patch == local.patch)


def test_instance_image_holds_the_instance_commit(toolz_docker):
    _, instances, _, _ = toolz_docker
    inst = instances[0]
    tag = build_instance_image(inst)
    assert tag.startswith("daggerlm/sweb.eval.x86_64.toolz_1776_mutation-")
    head = client().containers.run(tag, ["git", "-C", "/testbed", "rev-parse", "HEAD"], remove=True,
                                   network_mode="none").decode().strip()
    assert head == inst.base_commit
    assert build_instance_image(inst) == tag and client().images.get(tag).labels["daggerlm.commit"] == head

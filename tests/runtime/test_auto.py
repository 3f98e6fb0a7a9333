"""`runtime.kind: auto` runs each instance where it can: a record with its image in Docker, the
synthetic and mutation instances (no image, a repository snapshot) in the local sandbox."""

import json

from daggerlm.evaluation.grading import grade
from daggerlm.evaluation.harness import with_docker_spec
from daggerlm.instances.load import parse_instance
from daggerlm.runtime import LocalSandbox, open_sandbox, runs_in_docker
from daggerlm.runtime.docker import DockerSandbox
from tests.conftest import REPO


def gym_record():
    line = (REPO / "tests" / "fixtures" / "swegym_sample.jsonl").read_text().splitlines()[0]
    return with_docker_spec(parse_instance({**json.loads(line), "source": "swe-gym"}, "swegym_sample.jsonl:1"))


def test_auto_picks_per_instance(eval_instances, runtime):
    auto = runtime.model_copy(update={"kind": "auto"})
    gym, synthetic = gym_record(), eval_instances[0]
    assert gym.image and not synthetic.image
    assert runs_in_docker(gym, auto) and not runs_in_docker(synthetic, auto)
    assert isinstance(open_sandbox(gym, auto), DockerSandbox)  # built, not opened: no engine needed to choose
    assert isinstance(open_sandbox(synthetic, auto), LocalSandbox)
    # the fixed kinds stay as they were
    docker = runtime.model_copy(update={"kind": "docker"})
    assert isinstance(open_sandbox(synthetic, docker), DockerSandbox)
    assert not runs_in_docker(gym, runtime)  # local: every instance locally (one without a snapshot then fails)


def test_a_local_instance_runs_and_grades_under_auto(eval_instances, runtime):
    auto = runtime.model_copy(update={"kind": "auto"})
    inst = eval_instances[2]
    with open_sandbox(inst, auto) as box:
        assert box.run("git rev-parse HEAD")["output"].strip() == inst.base_commit
    assert grade(inst, inst.patch, auto)["resolved"] and not grade(inst, "", auto)["resolved"]

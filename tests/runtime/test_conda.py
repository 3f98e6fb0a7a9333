"""Agent commands in an image with the official SWE-bench layout run in its conda environment
`testbed`, as the harness's eval script runs the tests; images built here run as before.

Official images cannot be pulled here, so one with their layout is built from the base image:
/opt/miniconda3 with a `bin/activate` that behaves like conda's (it defines a `conda` shell
function whose `activate testbed` puts envs/testbed/bin first on PATH, sets CONDA_PREFIX and
CONDA_DEFAULT_ENV and runs the environment's activate.d scripts), a base environment with a python
of its own (no pytest), the `testbed` environment (a venv that sees the system pytest, its
sys.prefix its own), the image's PATH starting at /opt/miniconda3/bin as swebench's Dockerfile sets
it, and a git repository at /testbed whose test passes only under the testbed environment's python.
"""

from __future__ import annotations

import hashlib

import pytest

from daggerlm.errors import InputError
from daggerlm.instances.schema import Instance
from daggerlm.runtime import open_sandbox
from daggerlm.runtime.conda import (ACTIVATE, NO_LAYOUT, SEPARATOR, activated_variables, activation_script,
                                    image_path)
from daggerlm.runtime.docker import BASE_IMAGE, PATH, client
from daggerlm.runtime.sandbox import SandboxSetupError

TAG = "daggerlm-test/official-layout:latest"
TESTBED_ENV = "/opt/miniconda3/envs/testbed"
IMAGE_PATH = f"/opt/miniconda3/bin:{PATH}"  # swebench's base Dockerfile: ENV PATH=/opt/miniconda3/bin:$PATH

ACTIVATE_STAND_IN = r"""# Stand-in for miniconda's bin/activate: activates `base`, defines `conda`.
_conda_root=/opt/miniconda3
export PATH="$_conda_root/condabin:$_conda_root/bin:$PATH" CONDA_PREFIX="$_conda_root" \
    CONDA_DEFAULT_ENV=base CONDA_SHLVL=1
echo "stand-in conda: base active"
conda() {
    if [ "$1" != activate ] || [ ! -d "$_conda_root/envs/$2" ]; then
        echo "stand-in conda: cannot '$*'" >&2; return 1
    fi
    export PATH="$_conda_root/envs/$2/bin:$PATH" CONDA_PREFIX="$_conda_root/envs/$2" CONDA_DEFAULT_ENV="$2" \
        CONDA_PREFIX_1="$_conda_root" CONDA_SHLVL=2
    for hook in "$CONDA_PREFIX"/etc/conda/activate.d/*.sh; do [ -f "$hook" ] && . "$hook"; done
    return 0
}
"""

BUILD = rf"""set -e
python3 -m venv --without-pip /opt/miniconda3
cat > /opt/miniconda3/bin/activate <<'STAND_IN'
{ACTIVATE_STAND_IN}STAND_IN
python3 -m venv --without-pip --system-site-packages {TESTBED_ENV}
mkdir -p {TESTBED_ENV}/etc/conda/activate.d
echo 'export TESTBED_HOOK=from-activate.d' > {TESTBED_ENV}/etc/conda/activate.d/hook.sh
mkdir -p /testbed/pkg /testbed/tests && cd /testbed
echo 'def answer():
    return 42' > pkg/__init__.py
echo 'import sys
from pkg import answer


def test_runs_in_the_testbed_environment():
    assert sys.prefix == "{TESTBED_ENV}" and answer() == 42' > tests/test_env.py
git init -q && git add -A && git -c user.name=t -c user.email=t@localhost commit -qm base
"""


@pytest.fixture(scope="module")
def official_image(docker_runtime) -> Instance:
    """The image with the official layout (rebuilt when BUILD changes), and a SWE-bench record in it."""
    docker = client()
    digest = hashlib.sha256(BUILD.encode()).hexdigest()[:16]
    try:
        image = docker.images.get(TAG)
        current = image.labels.get("daggerlm.test.build") == digest
    except Exception:
        current = False
    if not current:
        container = docker.containers.create(BASE_IMAGE, command=["sleep", "infinity"], network_mode="none")
        try:
            container.start()
            code, out = container.exec_run(["bash", "-c", BUILD])
            assert code == 0, out.decode()
            container.stop(timeout=1)
            container.commit(repository=TAG.split(":")[0], tag="latest", conf={
                "Env": [f"PATH={IMAGE_PATH}"], "WorkingDir": "/testbed", "Labels": {"daggerlm.test.build": digest}})
        finally:
            container.remove(force=True)
    head = docker.containers.run(TAG, ["git", "-C", "/testbed", "rev-parse", "HEAD"], remove=True,
                                 network_mode="none").decode().strip()
    return Instance(instance_id="official-layout__demo-1", repo="daggerlm/official-layout", base_commit=head,
                    patch="", test_patch="", problem_statement="demo", FAIL_TO_PASS=[], PASS_TO_PASS=[],
                    image=TAG, source="swebench")


def test_activation_output_gives_what_activation_changed():
    before = ["PATH=/usr/bin", "HOME=/root", "PWD=/testbed", "SHLVL=1"]
    after = ["PATH=/env/bin:/usr/bin", "HOME=/root", "PWD=/testbed", "SHLVL=2", "CONDA_PREFIX=/env", "X=a=b\nc"]
    stdout = "\0".join([*before, SEPARATOR, *after, ""]).encode()
    assert activated_variables(0, stdout, b"") == {"PATH": "/env/bin:/usr/bin", "CONDA_PREFIX": "/env", "X": "a=b\nc"}
    assert activated_variables(NO_LAYOUT, b"", b"") == {}
    with pytest.raises(SandboxSetupError, match="EnvironmentNameNotFound"):
        activated_variables(1, "\0".join([*before, SEPARATOR, ""]).encode(), b"EnvironmentNameNotFound: testbed\n")
    assert all(f"{line} >&2 || exit 1" in activation_script() for line in ACTIVATE)
    assert image_path({"Env": ["A=1", f"PATH={IMAGE_PATH}"]}, PATH) == IMAGE_PATH
    assert image_path(None, PATH) == image_path({"Env": None}, PATH) == PATH


def test_agent_commands_run_in_the_testbed_environment(official_image, docker_runtime):
    with open_sandbox(official_image, docker_runtime) as box:
        r = box.run("which python; python -c 'import sys; print(sys.prefix)'")
        assert r["returncode"] == 0 and r["output"].split() == [f"{TESTBED_ENV}/bin/python", TESTBED_ENV]
        r = box.run("python -m pytest -q")
        assert r["returncode"] == 0 and "1 passed" in r["output"], r["output"]
        r = box.run("echo $CONDA_DEFAULT_ENV $CONDA_PREFIX $TESTBED_HOOK; pwd")
        assert r["output"].split() == ["testbed", TESTBED_ENV, "from-activate.d", "/testbed"]
        # the same interpreter as under the eval script's own activation, and activation's chatter
        # ("stand-in conda: base active") stays out of the agent's observations
        eval_style = box.run(" && ".join([*ACTIVATE, "which python", "python -c 'import sys; print(sys.prefix)'"]))
        assert eval_style["output"].split()[-2:] == [f"{TESTBED_ENV}/bin/python", TESTBED_ENV]
        assert "stand-in" not in r["output"] and box.snapshot() == {"head": official_image.base_commit, "diff": ""}


def test_the_sandbox_limits_hold_in_the_testbed_environment(official_image, docker_runtime):
    with open_sandbox(official_image, docker_runtime) as box:
        r = box.run("python -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=3)\"")
        assert r["returncode"] != 0 and "Network is unreachable" in r["output"]
        status = dict(line.split(":\t", 1) for line in box.run("cat /proc/self/status")["output"].splitlines()
                      if line.startswith(("Cap", "NoNewPrivs")))
        assert {k: v.strip() for k, v in status.items()} == {
            "CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16, "CapBnd": "0" * 16, "CapAmb": "0" * 16,
            "NoNewPrivs": "1"}
        host = box.container.attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"] and not host["Privileged"]
        assert host["SecurityOpt"] == ["no-new-privileges"] and host["PidsLimit"] == docker_runtime.pids_limit
        assert host["Memory"] == docker_runtime.memory_mb * 2**20
        r = box.run("python -c 'x = bytearray(10 * 1024 ** 3); print(len(x))'")
        assert r["returncode"] != 0 and "10737418240" not in r["output"]


def test_images_built_here_run_as_before(eval_instances, docker_runtime):
    with open_sandbox(eval_instances[0], docker_runtime) as box:
        assert box.activated == {}
        assert box.run("which python; echo $PATH")["output"].split() == ["/usr/local/bin/python", PATH]


def test_an_official_record_in_an_image_without_the_environment_is_refused(official_image, docker_runtime):
    record = official_image.model_copy(update={"image": BASE_IMAGE, "instance_id": "official-layout__missing-1"})
    with pytest.raises(InputError, match="no conda environment 'testbed'"):
        with open_sandbox(record, docker_runtime):
            pass
    assert not client().containers.list(all=True, filters={"label": "daggerlm.instance=official-layout__missing-1"})

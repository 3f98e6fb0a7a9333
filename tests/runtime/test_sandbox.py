import os
import re
import subprocess
import sys
import time

import pytest

from daggerlm.config import RuntimeConfig
from daggerlm.errors import InputError
from daggerlm.runtime import LocalSandbox, isolation_problem
from daggerlm.runtime import sandbox as sandbox_mod


@pytest.fixture()
def box(eval_instances, runtime):
    with LocalSandbox(eval_instances[0], runtime) as b:
        yield b


def test_isolation_available_here():
    assert isolation_problem() is None


PROBE_AT_ONCE = """
import contextlib, threading, time
from daggerlm.runtime import sandbox
probes, found, real = [], [], sandbox._process_limits

@contextlib.contextmanager
def slow_limits(name, config):  # widens the window in which the other threads arrive
    probes.append(name)
    time.sleep(0.3)
    with real(name, config) as join:
        yield join

sandbox._process_limits = slow_limits
barrier = threading.Barrier(8)

def first_sandbox():
    barrier.wait()
    found.append(sandbox.isolation_problem())

threads = [threading.Thread(target=first_sandbox) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(probes), set(found))
"""


def test_the_first_sandboxes_of_a_process_started_at_once_share_one_probe():
    """A Dask worker's first episodes all start at once: one probe must serve them all, not eight racing
    over one probe cgroup (one removing it while another writes its limit) and caching a failure."""
    r = subprocess.run([sys.executable, "-c", PROBE_AT_ONCE], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "1 {None}", r.stdout + r.stderr


def test_network_is_unreachable(box):
    r = box.run("python -c \"import socket; socket.create_connection(('127.0.0.1', 22), timeout=3)\"")
    assert r["returncode"] != 0 and "Network is unreachable" in r["output"]
    r = box.run("ip -o link show up 2>/dev/null | grep -v ' lo:' | wc -l")
    assert r["output"].strip() in ("0", "")


def test_timeout_kills_the_command_and_the_sandbox_goes_on(box):
    start = time.monotonic()
    r = box.run("sleep 1000", timeout=1)
    assert time.monotonic() - start < 10
    assert r["returncode"] == -1 and r["extra"]["timed_out"] and "timed out" in r["exception_info"]
    assert box.run("echo still here")["output"] == "still here\n"


def test_background_processes_do_not_outlive_the_command(box):
    box.run("(sleep 300 &) ; echo started")
    assert "sleep 300" not in box.run("ps -eo args")["output"]
    assert not [p for p in os.popen("ps -eo args").read().splitlines() if p.startswith("sleep 300")]


def test_output_is_capped(box):
    r = box.run("yes | head -c 10000000")
    assert r["extra"]["output_bytes"] == 10_000_000
    assert len(r["output"]) < box.config.max_output_bytes + 200
    assert "bytes of output truncated" in r["output"]


def test_writes_outside_the_episode_change_nothing(box, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    victim = outside / "victim.txt"
    victim.write_text("original")
    rel = os.path.relpath(victim, box.repo)
    r = box.run(f"echo pwned > {rel}; echo pwned > {victim}; echo pwned > ../../escape.txt; "
                f"rm -f {victim}; touch /tmp/daggerlm-escape; echo done")
    assert r["output"].count("Read-only file system") >= 4
    assert victim.read_text() == "original"
    assert not (box.root.parent / "escape.txt").exists() and not os.path.exists("/tmp/daggerlm-escape")
    # inside the episode, writing works
    assert box.run("echo ok > inside.txt && cat inside.txt")["output"] == "ok\n"


def test_host_environment_does_not_leak(monkeypatch, eval_instances, runtime):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-secret")
    with LocalSandbox(eval_instances[0], runtime) as b:
        assert "sk-planted" not in b.run("env")["output"]


def test_episode_directory_is_removed(eval_instances, runtime):
    with LocalSandbox(eval_instances[0], runtime) as b:
        root = b.root
        b.run("mkdir -p locked/deep && touch locked/deep/f && chmod 000 locked/deep locked")
        assert root.exists()
    assert not root.exists()


def test_snapshot_and_patch_are_the_git_diff(box, eval_instances):
    assert box.snapshot() == {"head": eval_instances[0].base_commit, "diff": ""}
    box.run("echo hello > new_file.txt && git commit -qam wip --allow-empty")
    snap = box.snapshot()
    assert "new file mode" in snap["diff"] and "+hello" in snap["diff"]
    assert snap["head"] != eval_instances[0].base_commit  # the diff is still taken from base_commit


def test_refuses_without_isolation_unless_opted_out(monkeypatch, eval_instances, runtime):
    monkeypatch.setattr(sandbox_mod, "isolation_problem", lambda: "unshare: operation not permitted")
    with pytest.raises(sandbox_mod.UnsafeSandboxError, match="allow_unsandboxed"):
        LocalSandbox(eval_instances[0], runtime)
    unsafe = runtime.model_copy(update={"allow_unsandboxed": True})
    with LocalSandbox(eval_instances[0], unsafe) as b:
        assert b.run("echo plain")["output"] == "plain\n"


def test_instance_without_repository_is_rejected(swebench_sample):
    from daggerlm.instances import load_instances

    with pytest.raises(InputError, match="django__django-10973: no repo_files"):
        LocalSandbox(load_instances(swebench_sample)[0], RuntimeConfig())


def test_test_runner_durations_are_masked_unless_switched_off(eval_instances, runtime):
    command = "python -m pytest -q 2>&1 | tail -1; python -m unittest 2>&1 | grep Ran"
    with LocalSandbox(eval_instances[0], runtime) as b:
        out = b.run(command)["output"]
    assert " in <t>" in out and "Ran 0 tests in <t>" in out, out
    with LocalSandbox(eval_instances[0], runtime.model_copy(update={"mask_durations": False})) as b:
        out = b.run(command)["output"]
    assert " in <t>" not in out and re.search(r"passed in \d+\.\d+s", out), out

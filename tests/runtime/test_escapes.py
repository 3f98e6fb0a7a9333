"""The escape suite: what an agent command might try, against the local sandbox and the Docker
runtime. CI runs it as root; `test_the_local_suite_as_a_non_root_user` runs the local half again as
user `nobody`. Each attempt prints ESCAPED only if a step that must fail succeeded; after each one a
marker directory outside the sandbox must still be empty and the sandbox must still work.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from daggerlm.config import RuntimeConfig
from daggerlm.runtime import open_sandbox

SECRET = "sk-daggerlm-planted-secret"

ATTEMPTS = {
    "remount / read-write": "mount -o remount,bind,rw / && echo x > {marker}/remount && echo ESCAPED",
    "unmount the read-only mounts": "umount -l / && echo ESCAPED; umount -l /tmp && echo ESCAPED",
    "new bind mount of /": "mkdir -p m && mount --bind / m && echo ESCAPED; echo x > m{marker}/bind",
    "write through /proc/1/root": "echo x > /proc/1/root{marker}/proc1 && echo ESCAPED",
    "write through /proc/self/root": "echo x > /proc/self/root{marker}/procself && echo ESCAPED",
    "symlink out of the worktree": "ln -s {marker} out && echo x > out/symlink && echo ESCAPED",
    "absolute host path": "echo x > {marker}/absolute && echo ESCAPED; cp /etc/hostname {marker}/ && echo ESCAPED",
    "mknod a device": "mknod ./mem c 1 1 && echo ESCAPED; mknod ./sda b 8 0 && echo ESCAPED",
    "write /proc/sys": "echo 1 > /proc/sys/vm/drop_caches && echo ESCAPED",
    "write /sys": "mkdir /sys/fs/cgroup/daggerlm-escape && echo ESCAPED; echo add > /sys/class/net/lo/uevent && echo ESCAPED",
    "signal a host process": "kill -9 {pid} && echo ESCAPED; kill -9 -1; true",
    "ptrace a host process": ("python -c \"import ctypes, sys; r = ctypes.CDLL(None).ptrace(16, {pid}, 0, 0); "
                              "print('ESCAPED' if r == 0 else 'denied')\""),
    "read a planted secret": "env; cat /proc/*/environ /proc/{self_pid}/environ 2>/dev/null | tr '\\0' '\\n'",
    "connect to the host's loopback": ("python -c \"import socket; socket.create_connection(('127.0.0.1', {port}), "
                                       "timeout=3); print('ESCAPED')\""),
    "fork bomb": "bomb() {{ bomb | bomb & }}; bomb; sleep 2",
    "exhaust memory": "python -c \"b = bytearray({memory_bytes}); print('ESCAPED')\"",
    "fill the disk": "for i in $(seq 64); do head -c 16M /dev/zero > fill$i; done; sleep 3; echo ESCAPED",
}


@pytest.fixture(params=["local", "docker"])
def sandbox_runtime(request, tmp_path) -> RuntimeConfig:
    limits = {"timeout_s": 8, "memory_mb": 256, "pids_limit": 64, "disk_mb": 128}
    if request.param == "docker":
        if os.geteuid() != 0 and os.environ.get("DAGGERLM_ESCAPES_LOCAL_ONLY"):
            pytest.skip("the non-root pass covers the local sandbox only")
        return request.getfixturevalue("docker_runtime").model_copy(update=limits)
    return RuntimeConfig(workdir=str(tmp_path), **limits)


@pytest.fixture()
def host_process():
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture()
def loopback_server():
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


@pytest.mark.parametrize("attempt", list(ATTEMPTS))
def test_escape_attempt_is_contained(attempt, sandbox_runtime, eval_instances, tmp_path_factory, host_process,
                                     loopback_server, monkeypatch):
    monkeypatch.setenv("DAGGERLM_PLANTED", SECRET)
    marker = tmp_path_factory.mktemp("outside")
    marker.chmod(0o777)  # writable for anyone: only the sandbox keeps writes out
    port, accepted = loopback_server
    command = ATTEMPTS[attempt].format(marker=marker, pid=host_process.pid, port=port, self_pid=os.getpid(),
                                       memory_bytes=2 * sandbox_runtime.memory_mb * 1024 * 1024)
    with open_sandbox(eval_instances[0], sandbox_runtime) as box:
        r = box.run(command)
        print(f"[{sandbox_runtime.kind}] {attempt}: exit {r['returncode']} {r['exception_info']}")
        assert "ESCAPED" not in r["output"], r["output"][-2000:]
        assert SECRET not in r["output"]
        assert list(marker.iterdir()) == []
        assert host_process.poll() is None, "a host process was killed"
        assert accepted == [], "the host's loopback server was reached"
        if attempt == "fill the disk":
            assert "disk_mb" in r["exception_info"], r
        after = box.run("echo alive && git status --short | wc -l")
        assert after["returncode"] == 0 and after["output"].startswith("alive"), after


def test_the_local_suite_as_a_non_root_user():
    """The local half of the suite again, as `nobody` (unprivileged user namespaces)."""
    if os.geteuid() != 0:
        pytest.skip("this run is already not root: the suite above ran as a non-root user")
    base = Path(tempfile.mkdtemp(prefix="daggerlm-nobody-"))
    shutil.chown(base, "nobody")
    repo = Path(__file__).resolve().parents[2]
    env = {"PATH": os.environ["PATH"], "HOME": str(base), "DAGGERLM_ESCAPES_LOCAL_ONLY": "1",
           "HF_HUB_OFFLINE": "1"}
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = subprocess.run([*as_nobody, sys.executable, "-c", "import daggerlm, pytest"], cwd=repo, env=env,
                           capture_output=True, text=True)
    if probe.returncode != 0:  # e.g. a checkout under a directory only root may enter
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"user nobody cannot run this checkout's python: {probe.stderr.strip()[-200:]}")
    r = subprocess.run([*as_nobody, sys.executable, "-m",
                        "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base / 'tmp'}", "-k", "local",
                        "-rA", str(Path(__file__))], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    shutil.rmtree(base, ignore_errors=True)
    print(r.stdout[-6000:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert f"{len(ATTEMPTS)} passed" in r.stdout

"""The local sandbox: one git worktree per episode, agent commands in Linux namespaces.

Each command runs under `unshare` in fresh network, mount and PID namespaces: no network (only a
downed loopback), every mount read-only except the episode directory, every process killed when
the command ends or times out, output capped. It implements mini-swe-agent's `Environment`
protocol, so mini-swe-agent's agent loop drives it unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from minisweagent.exceptions import Submitted

from daggerlm.actions import SUBMIT_MARKER
from daggerlm.config import RuntimeConfig
from daggerlm.errors import InfrastructureError, InputError
from daggerlm.instances.schema import Instance
from daggerlm.runtime.cgroups import SandboxCgroup
from daggerlm.runtime.envs import worktree_paths
from daggerlm.instances.git import checkout_instance

# Runs as the namespaces' first process, with every capability of its user namespace: make every
# mount read-only (each remount checked), the episode directory writable, set the limits, then drop
# every capability (bounding set included) with no-new-privileges before the agent's command runs,
# so that the command cannot undo any of it. A setup failure exits 250-253 with a line on stderr.
_PRELUDE = r"""
fail() { echo "daggerlm-sandbox: $1" >&2; exit "$2"; }
mount --make-rprivate / || fail "cannot make the mounts private" 250
while read -r id _ _ _ mp _; do
  case "$mp" in *\\*) mp=$(printf '%b' "$mp");; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null && continue
  # a mount hidden under another one, or gone with a container torn down while this namespace was
  # copied, is not what its path reaches (that mount is remounted in its own turn): skip it
  [ "$(findmnt -n -o ID -T "$mp" 2>/dev/null)" = "$id" ] && fail "cannot make $mp read-only" 250
done < /proc/self/mountinfo
mount --bind "$1" "$1" && mount -o remount,bind,rw "$1" || fail "cannot make $1 writable" 251
ulimit -v "$3" -f "$4" -u "$5" || fail "cannot set the limits" 252
cd "$2" || fail "no directory $2" 252
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all --ambient-caps=-all -- bash -c "$6"
"""
_SETUP_FAILED = "daggerlm-sandbox: "
_UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--ipc", "--uts", "--fork",
            "--kill-child", "--mount-proc"]
# As root: join the sandbox's cgroups (the positional args before `--`), then exec the rest.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 249; shift; done; shift; exec "$@"'
_SNAPSHOT = r"""
idx="$HOME/.daggerlm-index"; cp .git/index "$idx" 2>/dev/null
GIT_INDEX_FILE="$idx" git add -A >/dev/null 2>&1
git rev-parse HEAD; GIT_INDEX_FILE="$idx" git diff --cached --binary "$BASE_COMMIT"; rc=$?; rm -f "$idx"; exit $rc
"""


DURATION = re.compile(r"\bin \d+(?:\.\d+)?s\b(?: \(\d+:\d\d:\d\d\))?")
"""A test runner's wall time: pytest's "in 0.02s (0:00:00)", unittest's "Ran 3 tests in 0.001s"."""


class UnsafeSandboxError(InputError):
    """Agent commands cannot be isolated here (a setting or a missing tool: exit 2, not retried)."""


class SandboxSetupError(InfrastructureError):
    """The sandbox could not set up a command's isolation: an infrastructure failure, not the agent's."""


def _prelude_argv(root: str, repo: str, config: RuntimeConfig, command: str) -> list[str]:
    kb = lambda mb: str(mb * 1024)  # noqa: E731
    return [*_UNSHARE, "bash", "-c", _PRELUDE, "daggerlm-sandbox", root, repo, kb(config.memory_mb),
            kb(config.max_file_mb), str(config.pids_limit), command]


_PROBE_LOCK = threading.Lock()


def isolation_problem() -> str | None:
    """Why agent commands cannot be isolated here, or None when they can: probed once per process, under
    a lock (the first episodes of a process start at once; racing probes share one cgroup name)."""
    with _PROBE_LOCK:
        return _probe_isolation()


@cache
def _probe_isolation() -> str | None:
    """The probe runs the real prelude and checks from inside that the command holds no capability and
    `/` stays read-only."""
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        probe = "grep -q '^CapEff:[[:space:]]*0*$' /proc/self/status && ! touch /daggerlm-probe 2>/dev/null"
        try:
            with _process_limits(f"probe-{os.getpid()}", RuntimeConfig()) as join:
                r = subprocess.run([*join, *_prelude_argv(tmp, tmp, RuntimeConfig(), probe)], capture_output=True,
                                   text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"the sandbox could not start: {e}"
    if r.returncode == 0:
        return None
    reason = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
    return f"the sandbox probe failed: {reason[:300]}"


@contextmanager
def _process_limits(name: str, config: RuntimeConfig) -> Iterator[list[str]]:
    """The argv prefix that puts a command into cgroups capping its processes and memory (root only:
    the kernel does not enforce `ulimit -u` for root); nothing is needed for other users."""
    if os.geteuid() != 0:
        yield []
        return
    try:
        group = SandboxCgroup(f"daggerlm-{name}", config.pids_limit, config.memory_mb * 1024 * 1024)
    except OSError as e:
        raise OSError(f"as root, the sandbox needs a writable pids cgroup to cap processes ({e})") from None
    try:
        yield ["sh", "-c", _JOIN_CGROUPS, "join", *group.procs_files, "--"]
    finally:
        group.remove()


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class _CappedReader(threading.Thread):
    """Drains a pipe, keeping the first and last `cap/2` bytes and counting the rest."""

    def __init__(self, stream, cap: int):
        super().__init__(daemon=True)
        self.stream, self.half = stream, cap // 2
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def run(self) -> None:
        while chunk := self.stream.read1(65536):
            self.total += len(chunk)
            room = self.half - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail = (self.tail + chunk)[-self.half:]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {dropped} bytes of output truncated ...]\n" if dropped > 0 else ""
        return (bytes(self.head).decode(errors="replace") + middle + bytes(self.tail).decode(errors="replace"))


class Sandbox:
    """What an episode's environment offers the scaffold and the grader, whatever runs the commands:
    `run` a bash command (time and output limits, no network), `snapshot` the worktree, write a file
    to the sandbox's home; and mini-swe-agent's `Environment` protocol on top of them."""

    home: str = ""
    """The sandbox's home directory, as its commands see it."""
    workdir: str = ""
    """The repository, as its commands see it."""

    def __init__(self, instance: Instance, config: RuntimeConfig | None = None):
        self.instance, self.config = instance, config or RuntimeConfig()
        self.n_commands = 0

    def __enter__(self):
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def run(self, command: str, timeout: float | None = None) -> dict[str, Any]:
        """Run one bash command; never raises for the command's own failures."""
        raise NotImplementedError

    def write_home_file(self, name: str, text: str) -> None:
        raise NotImplementedError

    def command_env(self, path: str) -> dict[str, str]:
        """A clean environment: nothing of the host's (no API keys) reaches agent commands."""
        return {
            "PATH": path, "HOME": self.home, "TMPDIR": f"{self.home}/tmp",
            "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat", "GIT_PAGER": "cat", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTEST_ADDOPTS": "-p no:cacheprovider", "BASE_COMMIT": self.instance.base_commit,
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "agent", "GIT_AUTHOR_EMAIL": "agent@localhost",
            "GIT_COMMITTER_NAME": "agent", "GIT_COMMITTER_EMAIL": "agent@localhost", **self.config.env,
        }

    def result(self, reader: _CappedReader, returncode: int, seconds: float, timeout: float,
               timed_out: bool, killed: str = "") -> dict[str, Any]:
        """The command's observation; `killed` says why it was killed for a limit other than time."""
        self.n_commands += 1
        text = reader.text()
        if self.config.mask_durations:
            text = DURATION.sub("in <t>", text)
        out = {"output": text, "returncode": returncode, "exception_info": "",
               "extra": {"duration_s": round(seconds, 4), "output_bytes": reader.total}}
        if timed_out:
            out["returncode"] = -1
            out["exception_info"] = f"The command timed out after {timeout:g} seconds and was killed."
            out["extra"]["timed_out"] = True
        if killed:
            out["returncode"], out["exception_info"] = -1, killed
        return out

    def snapshot(self) -> dict[str, str]:
        """The environment state, small enough to store per turn: HEAD and the diff from base_commit."""
        r = self.run(_SNAPSHOT)
        head, _, diff = r["output"].partition("\n")
        if r["returncode"] != 0:
            return {"head": "", "diff": "", "error": r["output"][-500:]}
        return {"head": head.strip(), "diff": diff}

    # --- mini-swe-agent Environment protocol -----------------------------------------------
    def execute(self, action: dict, cwd: str = "", *, timeout: float | None = None) -> dict[str, Any]:
        command = action.get("command", "")
        output = self.run(command, timeout)
        lines = output["output"].lstrip().splitlines()
        if lines and lines[0].strip() == SUBMIT_MARKER and output["returncode"] == 0:
            patch = self.snapshot()["diff"]
            raise Submitted({"role": "exit", "content": patch,
                             "extra": {"exit_status": "Submitted", "submission": patch}})
        return output

    def get_template_vars(self, **kwargs) -> dict[str, Any]:
        return {"cwd": self.workdir, **kwargs}

    def serialize(self) -> dict:
        return {"info": {"config": {"environment": self.config.model_dump(mode="json"),
                                    "environment_type": f"{type(self).__module__}.{type(self).__name__}"}}}


class LocalSandbox(Sandbox):
    """An episode's environment: its own repository copy, removed on exit."""

    def __init__(self, instance: Instance, config: RuntimeConfig | None = None):
        if not instance.runnable_locally:
            raise InputError(f"instance {instance.instance_id}: no repo_files or repo_snapshot; it cannot run locally")
        super().__init__(instance, config)
        self.isolated = isolation_problem() is None
        if not self.isolated and not self.config.allow_unsandboxed:
            raise UnsafeSandboxError(
                f"cannot isolate agent commands: {isolation_problem()}. Refusing to run untrusted commands with "
                "network and host filesystem access; set runtime.allow_unsandboxed: true to run them anyway (unsafe).")
        self.root: Path | None = None
        self._limits = ExitStack()
        self._join: list[str] = []
        self.pythonpath: list[str] = []

    # --- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="daggerlm-ep-", dir=self.config.workdir))
        self.home, self.workdir = str(self.root / "home"), str(self.root / "repo")
        self._materialize()
        if self.isolated:
            self._join = self._limits.enter_context(_process_limits(self.root.name, self.config))

    def close(self) -> None:
        self._limits.close()
        if self.root is not None and self.root.exists():
            subprocess.run(["chmod", "-R", "u+rwX", str(self.root)], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    @property
    def repo(self) -> Path:
        assert self.root is not None, "sandbox not entered"
        return self.root / "repo"

    def _materialize(self) -> None:
        inst = self.instance
        home = self.root / "home"
        (home / "tmp").mkdir(parents=True)
        (self.root / "bin").mkdir()
        python = self.config.python or sys.executable
        if inst.environment:
            python = str(Path(self.config.envs_dir).resolve() / inst.environment / "bin" / "python")
            if not Path(python).is_file():
                raise InputError(f"instance {inst.instance_id}: environment {inst.environment!r} is not built in "
                                 f"{self.config.envs_dir} (`daggerlm instances mutate` builds it)")
        # the environment's worktree paths (src layout) under this episode's worktree: an editable install
        self.pythonpath = [str(self.repo / p) for p in worktree_paths(python)] if inst.environment else []
        wrapper = self.root / "bin" / "python"
        wrapper.write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
        wrapper.chmod(0o555)
        checkout_instance(inst, self.repo)

    def _env(self) -> dict[str, str]:
        env = self.command_env(f"{self.root / 'bin'}:/usr/local/bin:/usr/bin:/bin")
        if self.pythonpath:
            env["PYTHONPATH"] = ":".join([*self.pythonpath, *filter(None, [env.get("PYTHONPATH")])])
        return env

    def write_home_file(self, name: str, text: str) -> None:
        (self.root / "home" / name).write_text(text)

    # --- running commands ------------------------------------------------------------------
    def run(self, command: str, timeout: float | None = None) -> dict[str, Any]:
        """Run one bash command in the sandbox; never raises for the command's own failures. A command
        that outlives `timeout` or grows the episode directory past `runtime.disk_mb` is killed. A
        setup that failed (a host mount changing while the namespace was copied) is tried once more."""
        try:
            return self._run(command, timeout)
        except SandboxSetupError:
            return self._run(command, timeout)

    def _run(self, command: str, timeout: float | None) -> dict[str, Any]:
        timeout = timeout or self.config.timeout_s
        if self.isolated:
            argv = [*self._join, *_prelude_argv(str(self.root), str(self.repo), self.config, command)]
        else:
            argv = ["bash", "-c", command]
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=self.repo, env=self._env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        reader = _CappedReader(proc.stdout, self.config.max_output_bytes)
        reader.start()
        timed_out, killed = False, ""
        while proc.poll() is None:
            try:
                proc.wait(timeout=min(1.0, max(0.01, start + timeout - time.monotonic())))
            except subprocess.TimeoutExpired:
                timed_out = time.monotonic() - start >= timeout
                if not timed_out and _disk_usage_mb(self.root) > self.config.disk_mb:
                    killed = (f"The command grew the sandbox's files past {self.config.disk_mb} MB "
                              "(runtime.disk_mb) and was killed.")
                if timed_out or killed:
                    _kill_tree(proc)
                    proc.wait()
        reader.join(timeout=5)
        if (self.isolated and not (timed_out or killed) and 249 <= proc.returncode <= 252
                and reader.text().startswith(_SETUP_FAILED)):
            raise SandboxSetupError(reader.text().strip()[:300])
        return self.result(reader, proc.returncode, time.monotonic() - start, timeout, timed_out, killed)


def _disk_usage_mb(root: Path) -> float:
    """Megabytes of files under root (`du`, which does not follow symlinks out of it)."""
    r = subprocess.run(["du", "-s", "-k", "-x", str(root)], capture_output=True, text=True)
    return int(r.stdout.split()[0]) / 1024 if r.stdout else 0.0

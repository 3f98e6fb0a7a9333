"""Episodes in Docker containers: one container per episode, removed afterwards, even on a crash.

A container runs with no network, every capability dropped but `CAPABILITIES`, no-new-privileges,
and limits on memory, CPUs, processes and the size of its writable layer. The
repository is the image's `/testbed` (official SWE-bench / SWE-Gym images, by name in the
instance's `image`) or, for instances without an image, copied there from the instance's snapshot,
into its environment's image (`images.build_env_image`) or, with no environment, into
`runtime.docker_image`. Commands run through `docker exec` under `timeout`, output capped; when
a command leaves processes behind the container is restarted (its files kept), so nothing a command
started outlives it, as in the local sandbox. In an image with the official layout, commands run
with its conda environment `testbed` active, as the harness runs its tests (`runtime.conda`).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from daggerlm.config import RuntimeConfig
from daggerlm.errors import InputError
from daggerlm.instances.schema import Instance
from daggerlm.instances.git import checkout_instance
from daggerlm.runtime import conda
from daggerlm.runtime.sandbox import Sandbox, _CappedReader

TESTBED = "/testbed"
HOME = "/root"
BASE_IMAGE = "daggerlm/base:bookworm"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPABILITIES: dict[str, str] = {}
"""Capabilities kept in a container, each with why. None: commands run as root of the image, whose
/testbed and environment root owns, so a test run needs no capability (no DAC override, no chown
of other users' files, no mknod, no raw sockets, no setuid)."""


def env_image_tag(environment: str) -> str:
    """The image of a repository environment (`images.build_env_image`)."""
    return f"daggerlm/env.{environment}:latest".lower()


def client():
    import docker

    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except Exception as e:  # no daemon: say so in one line
        raise InputError(f"runtime.kind=docker: no Docker engine answers ({type(e).__name__}: {e})") from None
    return c


class _StreamReader:
    """`read1` over docker's exec output stream, for `_CappedReader`."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)

    def read1(self, _n: int) -> bytes:
        return next(self.chunks, b"")


def repository_tar(instance: Instance) -> bytes:
    """/testbed: the instance's repository at base_commit (a git repository, as in official images)."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "testbed"
        checkout_instance(instance, repo)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(repo, arcname=TESTBED.lstrip("/"))
        return buffer.getvalue()


class DockerSandbox(Sandbox):
    home, workdir = HOME, TESTBED

    def __init__(self, instance: Instance, config: RuntimeConfig | None = None):
        super().__init__(instance, config)
        if not instance.image and not instance.runnable_locally:
            raise InputError(f"instance {instance.instance_id}: no image and no repository snapshot to copy")
        self.container = None
        self.activated: dict[str, str] = {}
        """What activating the image's `testbed` environment set (`conda.activated_variables`); {} in
        images without one."""

    def image(self) -> str:
        if self.instance.image:
            return self.instance.image
        if self.instance.environment:
            return env_image_tag(self.instance.environment)
        return self.config.docker_image

    def open(self) -> None:
        docker = client()
        image = self.image()
        try:
            config = docker.images.get(image).attrs.get("Config")
        except Exception:
            raise InputError(f"image {image!r} not found locally (no image can be pulled here; "
                             "`daggerlm docker build-base` builds the base image, `daggerlm docker build-env` "
                             "a library's environment image)") from None
        self.container = docker.containers.create(
            image, command=["sleep", "infinity"], network_mode="none", privileged=False,
            mem_limit=f"{self.config.memory_mb}m", memswap_limit=f"{self.config.memory_mb}m",
            nano_cpus=int(self.config.cpus * 1e9), pids_limit=self.config.pids_limit, init=True,
            cap_drop=["ALL"], cap_add=list(CAPABILITIES) or None, security_opt=["no-new-privileges"],
            labels={"daggerlm.instance": self.instance.instance_id}, working_dir=TESTBED)
        self.container.start()
        if not self.instance.image:
            self.container.exec_run(["rm", "-rf", TESTBED])
            self.container.put_archive("/", repository_tar(self.instance))
        self.container.exec_run(["mkdir", "-p", f"{HOME}/tmp"])  # TMPDIR, before anything runs
        self.activated = self._activate(conda.image_path(config, PATH))
        self.run(f"git config --global --add safe.directory {TESTBED}")

    def _activate(self, path: str) -> dict[str, str]:
        """The image's `testbed` environment, activated once from the image's own PATH, as the
        harness's eval script does it. An official record whose own image has none is refused: its
        episode would run outside the environment its tests are graded in. (One without an image, its
        repository copied into `runtime.docker_image`, runs as before.)"""
        argv = ["timeout", "-s", "KILL", f"{self.config.timeout_s:g}", "bash", "-c", conda.activation_script()]
        code, (out, err) = self.container.exec_run(argv, environment=self.command_env(path), workdir=TESTBED,
                                                   demux=True)
        activated = conda.activated_variables(code, out, err)
        if not activated and self.instance.image and self.instance.source in conda.OFFICIAL_SOURCES:
            raise InputError(f"instance {self.instance.instance_id} ({self.instance.source}): its image "
                             f"{self.image()!r} has no conda environment {conda.ENV_NAME!r} under "
                             f"{conda.CONDA_ROOT}, where the official harness runs its tests")
        return activated

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:
                pass
            self.container = None

    def _leftovers(self) -> bool:
        """Whether processes besides the container's init and its `sleep` run (asked from the host:
        inside, a full pids limit leaves no room to look)."""
        import docker

        try:
            top = self.container.top(ps_args="-o pid,args")
        except docker.errors.APIError:  # not running: the command killed the container's own processes
            return True
        return any(not row[-1].endswith(("sleep infinity", "docker-init -- sleep infinity"))
                   for row in top.get("Processes") or [])

    def write_home_file(self, name: str, text: str) -> None:
        data = text.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        self.container.put_archive(HOME, buffer.getvalue())

    def run(self, command: str, timeout: float | None = None) -> dict[str, Any]:
        timeout = timeout or self.config.timeout_s
        api = self.container.client.api
        argv = ["timeout", "-s", "KILL", f"{timeout:g}", "bash", "-c",
                f"ulimit -f {self.config.max_file_mb * 1024}; {command}"]
        env = {**self.command_env(PATH), **self.activated, **self.config.env}
        self.container.reload()
        if self.container.status != "running":  # an earlier command killed the container's own processes
            self.container.start()
        start = time.monotonic()
        exec_id = api.exec_create(self.container.id, argv, environment=env, workdir=TESTBED, stdout=True,
                                  stderr=True, stdin=False)["Id"]
        reader = _CappedReader(_StreamReader(api.exec_start(exec_id, stream=True)), self.config.max_output_bytes)
        reader.start()
        killed = ""
        while reader.is_alive() and time.monotonic() - start < timeout + 30:
            reader.join(1.0)
            if reader.is_alive() and self._layer_mb() > self.config.disk_mb:
                killed = (f"The command grew the container's files past {self.config.disk_mb} MB "
                          "(runtime.disk_mb) and was killed.")
                break
        code = None if killed else api.exec_inspect(exec_id).get("ExitCode")
        seconds = time.monotonic() - start
        timed_out = not killed and seconds >= timeout and code in (None, 124, 137)
        if killed or self._leftovers():  # what the command started lives on (a fork bomb fills the pids limit),
            self.container.restart(timeout=1)  # or it killed the container's own processes: start it again
        return self.result(reader, -1 if code is None else code, seconds, timeout, timed_out, killed)

    def _layer_mb(self) -> float:
        """Size of the container's writable layer (what its commands wrote), in MB."""
        found = self.container.client.api.containers(all=True, size=True, filters={"id": self.container.id})
        return (found[0].get("SizeRw") or 0) / 2**20 if found else 0.0


def build_base_image(tag: str = BASE_IMAGE, suite: str = "bookworm",
                     mirror: str = "http://deb.debian.org/debian") -> str:
    """The base image, built locally (nothing can be pulled): a `debootstrap --variant=minbase` root
    filesystem with python3, pytest and git, `docker import`ed. Skipped when the tag exists."""
    docker = client()
    try:
        docker.images.get(tag)
        return tag
    except Exception:
        pass
    if shutil.which("debootstrap") is None:
        raise InputError("debootstrap is not installed (apt-get install -y debootstrap)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-pytest,git,procps",
                        suite, str(root), mirror], check=True, capture_output=True)
        (root / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    return tag


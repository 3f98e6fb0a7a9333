"""Per-sandbox cgroups (processes and memory) for the local sandbox when it runs as root.

A non-root sandbox caps its processes with `ulimit -u`, which the kernel counts per user
namespace; for root (kuid 0) the kernel never enforces that limit, so a fork bomb would run until
the command's time limit. As root, each sandbox therefore gets its own `pids` (and, where
available, `memory`) cgroup, which its commands join before they enter their namespaces.
Works with cgroup v1 (a hierarchy per controller, the sandbox below this process's own cgroup) and
v2 (one hierarchy, the sandbox below `<root>/daggerlm`, whose controllers are enabled on the way).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

CONTROLLERS = ("pids", "memory")


def _mountinfo() -> list[tuple[str, str, str, set[str]]]:
    """(root within the hierarchy, mount point, fs type, super options) of every cgroup mount."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, (fstype, _source, options) = left.split(), right.split()[:3]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((fields[3], fields[4], fstype, set(options.split(","))))
    return mounts


def controller_dirs() -> dict[str, Path]:
    """For each controller available to this process, the directory new sandbox cgroups go under."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            own[c] = path
    found: dict[str, Path] = {}
    mounts = _mountinfo()
    for root, mount_point, fstype, options in mounts:
        if fstype == "cgroup":  # v1: below this process's own cgroup of that controller
            for c in CONTROLLERS:
                if c in options and c in own and c not in found:
                    rel = os.path.relpath(own[c], root) if own[c].startswith(root) else "."
                    found[c] = Path(mount_point) / rel
    for root, mount_point, fstype, _ in mounts:
        if fstype == "cgroup2" and root == "/":
            available = (Path(mount_point) / "cgroup.controllers")
            names = available.read_text().split() if available.is_file() else []
            for c in CONTROLLERS:
                if c in names and c not in found:
                    found[c] = Path(mount_point) / "daggerlm"
    return found


class SandboxCgroup:
    """One sandbox's cgroups; `procs_files` are what a command writes its pid to, to join them."""

    def __init__(self, name: str, pids_max: int, memory_bytes: int):
        dirs = controller_dirs()
        if "pids" not in dirs:
            raise OSError("no cgroup with the pids controller is mounted")
        self.dirs: list[Path] = []
        try:
            for c, parent in dirs.items():
                if parent.name == "daggerlm" and (parent.parent / "cgroup.subtree_control").is_file():  # v2
                    _enable_v2(parent.parent, c)
                    parent.mkdir(exist_ok=True)
                    _enable_v2(parent, c)
                d = parent / name
                d.mkdir(exist_ok=True)
                self.dirs.append(d)
                if c == "pids":
                    (d / "pids.max").write_text(str(pids_max))
                elif (d / "memory.max").is_file():  # v2
                    (d / "memory.max").write_text(str(memory_bytes))
                    if (d / "memory.swap.max").is_file():
                        (d / "memory.swap.max").write_text("0")
                else:  # v1: the memory limit first, then memory + swap at the same value
                    (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
                    with contextlib.suppress(OSError):
                        (d / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        except OSError:
            self.remove()
            raise

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def remove(self) -> None:
        """Remove the cgroups (their processes are gone once the command's PID namespace ended)."""
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        self.dirs = []


def _enable_v2(directory: Path, controller: str) -> None:
    control = directory / "cgroup.subtree_control"
    if controller not in control.read_text().split():
        control.write_text(f"+{controller}")

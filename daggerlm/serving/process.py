"""Start a server for a stage and stop it afterwards, even when the stage fails.

The server binds to 127.0.0.1 on a free port, its output goes to a log file that is kept, the
stage waits until its health URL answers (or the process dies: then the log's tail says why; exit
status 2, a usage error, is the config's fault, not the machine's), and
it is stopped by process group (SIGTERM, then SIGKILL), so workers it spawned go with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daggerlm.errors import InfrastructureError, InputError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(text[-lines:]) or "no output"


def wait_healthy(url: str, process: subprocess.Popen | None, log: Path | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            if process.returncode == 2:  # argparse's (and click's) usage error: a rerun would fail alike
                raise InputError(f"server rejected its command line (exit 2): {_tail(log)}")
            raise InfrastructureError(f"server exited with {process.returncode} before answering {url}: {_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise InfrastructureError(f"server did not answer {url} within {timeout_s:g} s: {_tail(log) if log else ''}")


def stop(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


@contextmanager
def managed_server(argv: list[str], port: int, log: Path, health_path: str = "/v1/models",
                   timeout_s: float = 600.0, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `argv` (which must listen on 127.0.0.1:`port`) for the duration of the block; its base URL."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **(env or {})})
    try:
        wait_healthy(f"http://127.0.0.1:{port}{health_path}", process, log, timeout_s)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)

"""A pipeline stage as a Prefect task: DVC executes it (so DVC writes dvc.lock), Prefect retries it
when, and only when, a retry can help: the stage exited with `INFRASTRUCTURE_EXIT` (a model server
unreachable, a server that did not start in time). Bad input (exit 2) or a bug fails at once.

`dvc repro --single-item STAGE` runs only that stage, and only if its deps or params changed:
an unchanged stage is skipped in about a second. Episode stages are Prefect flows themselves
(`flows/stage.py`); they are pointed at this flow's server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from prefect import task
from prefect.client.orchestration import get_client
from prefect.logging import get_run_logger

from daggerlm.errors import INFRASTRUCTURE_EXIT


class StageFailed(RuntimeError):
    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.transient = exit_code == INFRASTRUCTURE_EXIT


def stage_exit_code(output: str) -> int | None:
    """The exit status of the stage's command, as `dvc repro` reports it."""
    found = re.findall(r"exited with (\d+)", output)
    return int(found[-1]) if found else None


def stage_failure(stage: str, output: str) -> StageFailed:
    """One line: the stage command's own last error line and its exit status, or, when DVC refused the
    stage before running it (a param missing from its params file, a dep absent), DVC's own message."""
    lines = output.splitlines() or [""]
    code = stage_exit_code(output)
    if code is None:
        refusals = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
        return StageFailed(f"dvc repro {stage}: DVC refused the stage: {(refusals or lines)[-1]}")
    own = [line for line in lines if line.startswith(("error: ", "failed (retry may help): "))]
    reason = own[-1] if own else lines[-1]  # the stage's own one-line message, else DVC's last word
    return StageFailed(f"dvc repro {stage} failed (stage exit {code}): {reason}", code)


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect's `retry_condition_fn`: retry a stage only after an infrastructure failure."""
    try:
        state.result()
    except StageFailed as e:
        return e.transient
    except Exception:
        return False
    return False


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_if_transient, tags=["dvc-stage"],
      task_run_name="{stage}")
def dvc_stage(stage: str, project: str) -> dict:
    """Reproduce one DVC stage; returns whether it ran or was skipped."""
    logger = get_run_logger()
    with get_client(sync_client=True) as client:  # the stage's own flow reports to this server, even a temporary one
        api_url = str(client.api_url).rstrip("/")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PREFECT_API_URL": api_url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run(["dvc", "repro", "--single-item", stage], cwd=project, env=env, capture_output=True, text=True)
    output = (r.stdout + r.stderr).strip()
    if r.returncode != 0:
        logger.error(output[-4000:])
        raise stage_failure(stage, output)
    ran = "Running stage" in output
    for line in output.splitlines():  # relay what an episode stage says of itself: its stats, what it reused
        if f"{stage}: " in line or "reused from the cache" in line:
            logger.info(line.split(" - ", 1)[-1])
    logger.info(f"{stage}: {'ran' if ran else 'up to date, skipped'}")
    return {"stage": stage, "ran": ran}

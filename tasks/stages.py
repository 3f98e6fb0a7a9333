"""A pipeline stage as a Prefect task: DVC executes it (so DVC writes dvc.lock), Prefect retries it.

`dvc repro --single-item STAGE` runs only that stage, and only if its deps or params changed:
an unchanged stage is skipped in about a second. Episode stages are Prefect flows themselves
(`flows/stage.py`); they are pointed at this flow's server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import task
from prefect.client.orchestration import get_client
from prefect.logging import get_run_logger


class StageFailed(RuntimeError):
    pass


@task(retries=2, retry_delay_seconds=[5, 30], tags=["dvc-stage"], task_run_name="{stage}")
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
        raise StageFailed(f"dvc repro {stage} failed (exit {r.returncode}): {output.splitlines()[-1] if output else ''}")
    ran = "Running stage" in output
    for line in output.splitlines():  # relay what an episode stage says of itself: its stats, what it reused
        if f"{stage}: " in line or "reused from the cache" in line:
            logger.info(line.split(" - ", 1)[-1])
    logger.info(f"{stage}: {'ran' if ran else 'up to date, skipped'}")
    return {"stage": stage, "ran": ran}

"""The Prefect flow on a temporary local server: stages run through DVC, a re-run skips them all."""

import json
import os
import subprocess
import sys
import time

from tests.conftest import REPO
from tests.pipeline.test_dvc import make_project


def _flow(project, env, *args):
    code = ("import sys; from flows.dagger import dagger_flow, DaggerRun; "
            f"dagger_flow(DaggerRun(project={str(project)!r}, **{{k: int(v) for k, v in (a.split('=') for a in sys.argv[1:])}}))")
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=1500)
    return r, time.monotonic() - start


def test_flow_runs_stages_through_dvc_and_reruns_cached(tmp_path):
    project, p, env = make_project(tmp_path)
    env = {**env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
           "PYTHONPATH": str(REPO)}
    first, t1 = _flow(project, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"stages run: {3 + 5 * p.dagger.iterations} of {3 + 5 * p.dagger.iterations}" in first.stdout + first.stderr
    status = subprocess.run(["dvc", "status"], cwd=project, env=env, capture_output=True, text=True)
    assert "Data and pipelines are up to date" in status.stdout
    second, t2 = _flow(project, env)
    assert second.returncode == 0
    assert f"stages run: 0 of {3 + 5 * p.dagger.iterations}" in second.stdout + second.stderr
    assert t2 < 0.5 * t1, (t1, t2)
    rows = json.loads((project / "data" / "report" / "iterations.json").read_text())
    assert len(rows) == p.dagger.iterations


def test_bad_ui_params_fail_before_any_stage(tmp_path):
    project, _, env = make_project(tmp_path)
    env = {**env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PYTHONPATH": str(REPO)}
    code = ("from flows.dagger import dagger_flow; "
            f"dagger_flow({{'project': {str(project)!r}, 'beta': {{'kind': 'constant', 'value': 1.5}}}})")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "less than or equal to 1" in r.stdout + r.stderr
    assert not (project / "data").exists()

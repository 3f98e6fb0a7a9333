"""The deployments through a real Prefect server and a process worker: `dagger-loop` runs iteration 0,
then `dagger-nightly` (what its schedule runs) performs the next iteration, skipping everything of
iteration 0; artifacts and runs read back through the API."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import REPO
from daggerlm.instances.synthetic import generate
from daggerlm.serving.process import free_port
from tests.helpers import TEACHER_KEY, TEACHER_KEY_ENV, files_containing, oracle_server
from tests.pipeline.project import make_project

READ_BACK = """
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
with get_client(sync_client=True) as client:
    run = client.read_flow_run(sys.argv[1])
    artifacts = client.read_artifacts()
    stages, runs = {}, {}
    for stage_run in client.read_flow_runs():
        if "@" in stage_run.name:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[stage_run.id])))
            stages[stage_run.name] = sorted(t.name for t in tasks)
            runs[stage_run.name] = runs.get(stage_run.name, 0) + 1
    print(json.dumps({"state": run.state.type.value, "stages": stages, "stage_runs": runs,
                      "artifacts": {a.key: a.data for a in artifacts if a.key}}, default=str))
"""


def test_deployment_runs_on_a_process_worker(tmp_path):
    """The teacher is our oracle behind HTTP with a planted API key: no file of the run (project,
    Prefect's database, result storage, logs) may contain it."""
    teacher_port = free_port()
    project, p, env = make_project(tmp_path, **{"teacher.kind": "openai", "teacher.endpoint": {
        "base_url": f"http://127.0.0.1:{teacher_port}/v1", "model": "oracle", "api_key_env": TEACHER_KEY_ENV,
        "send_state": True}})
    train = generate(p.instances.train.n, "train", p.instances.train.seed, p.instances.modules_per_repo,
                     p.instances.functions_per_module)
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {**env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "DAGGERLM_REPO": str(REPO),
           TEACHER_KEY_ENV: TEACHER_KEY}
    prefect = str(bin_dir / "prefect")
    with oracle_server(tmp_path / "teacher", train, port=teacher_port):
        server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                    break
                except OSError:
                    time.sleep(1)
            else:
                raise AssertionError("Prefect server did not start")

            def run(*args, timeout=600):
                r = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
                assert r.returncode == 0, f"{args}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
                return r.stdout

            run(prefect, "work-pool", "create", "daggerlm", "--type", "process")
            run(prefect, "--no-prompt", "deploy", "--all")
            out = run(prefect, "deployment", "run", "dagger/dagger-loop", "--param",
                      "run=" + json.dumps({"project": str(project), "iterations": 1}))
            flow_run_id = out.split("UUID:")[1].split()[0]
            run(prefect, "worker", "start", "--pool", "daggerlm", "--run-once", timeout=1200)
            seen = json.loads(run(sys.executable, "-c", READ_BACK, flow_run_id))
            first_rows = json.loads((project / "data/report/iterations.json").read_text())
            # what the nightly schedule runs: the next iteration
            out = run(prefect, "deployment", "run", "dagger/dagger-nightly", "--param",
                      "run=" + json.dumps({"project": str(project), "more_iterations": 1}))
            run(prefect, "worker", "start", "--pool", "daggerlm", "--run-once", timeout=1200)
            nightly = json.loads(run(sys.executable, "-c", READ_BACK, out.split("UUID:")[1].split()[0]))
        finally:
            os.killpg(server.pid, 9)
            server.wait()
    assert seen["state"] == "COMPLETED"
    artifacts = seen["artifacts"]
    assert {"dagger-summary", "dagger-progress", "dagger-eval-instances", "dagger-inspector"} <= set(artifacts)
    link = re.fullmatch(r"\[.+\]\(file://(.+)\)", artifacts["dagger-inspector"])  # a markdown link to a file
    assert link and Path(link[1]).name == "index.html" and Path(link[1]).is_file()
    assert artifacts["dagger-summary"].startswith("| K | β | labels | resolved |")
    assert float(artifacts["dagger-progress"]) == 100.0
    table = artifacts["dagger-eval-instances"]
    table = json.loads(table) if isinstance(table, str) else table
    assert len(table) == p.instances.eval.n and {"instance_id", "resolved"} <= set(table[0])
    # the episode stages ran as flows on the same server, one task run per episode, each with its progress
    train_ids = sorted(json.loads(line)["instance_id"]
                       for line in (project / "data/instances/train.jsonl").read_text().splitlines())
    # the run asked for one iteration: a UI value, written to params.yaml before any stage ran
    rows = [line for line in artifacts["dagger-summary"].splitlines()[2:] if line.startswith("| ")]
    assert len(rows) == 2 and rows[0].startswith("| base |") and rows[1].startswith("| 0 |")
    assert seen["stages"]["rollout@0"] == train_ids == seen["stages"]["label@0"]
    assert len(seen["stages"]["evaluate@0"]) == p.instances.eval.n
    for stage in ("rollout", "label", "evaluate"):
        assert float(artifacts[f"{stage}-0-progress"]) == 100.0
    status = subprocess.run(["dvc", "status"], cwd=project, env=env, capture_output=True, text=True)
    assert "Data and pipelines are up to date" in status.stdout
    labels = json.loads((project / "data/labels/iter_0/stats.json").read_text())
    assert labels["teacher_prompt_tokens"] > 0 and labels["failed_trajectories"] == 0  # the teacher answered over HTTP
    assert not files_containing(tmp_path, TEACHER_KEY)
    # the nightly run performed iteration 1 and reran nothing of iteration 0
    assert [r["iteration"] for r in first_rows] == [0]
    assert nightly["state"] == "COMPLETED"
    rows = json.loads((project / "data/report/iterations.json").read_text())
    assert [r["iteration"] for r in rows] == [0, 1] and rows[0] == first_rows[0]
    assert nightly["stage_runs"] == {f"{s}@{k}": 1 for s in ("rollout", "label", "evaluate") for k in (0, 1)}
    assert "iterations: 2" in (project / "params.yaml").read_text()
    assert "Data and pipelines are up to date" in subprocess.run(["dvc", "status"], cwd=project, env=env,
                                                                 capture_output=True, text=True).stdout

"""Episodes on a real Dask cluster (`dagger.executor.kind: dask`): a scheduler and two worker processes
on this machine, a real Prefect server, a served student (our oracle behind HTTP, its API key only in
the workers' environment). The rollout stage gives the episodes the thread pool gives, runs them on
both workers, and loses nothing when a worker is killed in the middle of it."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from daggerlm.instances.synthetic import generate
from daggerlm.serving.process import free_port
from tests.conftest import REPO
from tests.helpers import TEACHER_KEY, TEACHER_KEY_ENV, oracle_server
from tests.pipeline.project import make_project

BIN = Path(sys.executable).parent
N = 8


def _wait_for(check, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


def _up(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(env, scheduler address, worker processes): a Prefect server, a Dask scheduler and two workers."""
    root = tmp_path_factory.mktemp("cluster")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_LOCAL_STORAGE_PATH": str(root / "storage"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PYTHONPATH": str(REPO), "PATH": f"{BIN}:{os.environ['PATH']}"}
    procs = [subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    scheduler_file = root / "scheduler.json"
    procs.append(subprocess.Popen([str(BIN / "dask"), "scheduler", "--scheduler-file", str(scheduler_file),
                                   "--port", "0", "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True))
    try:
        _wait_for(lambda: _up(f"http://127.0.0.1:{port}/api/health"), "the Prefect server starting")
        _wait_for(scheduler_file.is_file, "the Dask scheduler starting")
        address = json.loads(scheduler_file.read_text())["address"]
        worker_env = {**env, TEACHER_KEY_ENV: TEACHER_KEY}  # the served student's key: on the workers only
        workers = [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "4", "--no-nanny",
                                     "--no-dashboard", "--name", f"w{i}"], env=worker_env, cwd=root,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                   for i in range(2)]
        procs += workers
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield env, address, workers
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _project(tmp_path, name, student_url, **executor):
    (tmp_path / name).mkdir()
    project, _, env = make_project(tmp_path / name, **{
        "instances.train": {"n": N, "seed": 3}, "dagger.beta": {"kind": "constant", "value": 0.5},
        "dagger.concurrency": 4, "student.kind": "openai", "student.build_tiny": False,
        "student.model": "daggerlm/oracle", "student.server": {"launch": "none", "endpoint": {
            "base_url": student_url, "model": "oracle", "api_key_env": TEACHER_KEY_ENV, "send_state": True}},
        "dagger.executor": {"kind": "threads", **executor}})
    return project, env


def _stage(project, env, *args, wait=True):
    command = [str(BIN / "daggerlm"), "stage", *args]
    if not wait:
        return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    r = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{command}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _episodes(project):
    """Per instance: who acted each turn and what it ran."""
    lines = (project / "data" / "rollouts" / "iter_0" / "trajectories.jsonl").read_text().splitlines()
    return {t["instance_id"]: [(turn["actor"], turn["response"]) for turn in t["turns"]]
            for t in map(json.loads, lines)}


def _executed(address) -> dict:
    from distributed import Client

    with Client(address, timeout=60) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)


def test_rollout_on_dask_workers_matches_threads_and_survives_a_killed_worker(cluster, tmp_path):
    env, address, workers = cluster
    train = generate(N, "train", 3)
    with oracle_server(tmp_path / "student", train) as url:
        runs = {}
        for name, executor in (("threads", {}), ("dask", {"kind": "dask", "address": address}),
                               ("killed", {"kind": "dask", "address": address}),
                               ("local", {"kind": "dask", "workers": 2})):  # a local cluster for the stage
            project, project_env = _project(tmp_path, name, url, **executor)
            runs[name] = project
            env_here = {**project_env, **{k: v for k, v in env.items() if k.startswith("PREFECT") or k == "PYTHONPATH"},
                        TEACHER_KEY_ENV: TEACHER_KEY}
            _stage(project, env_here, "instances")
            _stage(project, env_here, "init-model")
            storage = Path(env["PREFECT_LOCAL_STORAGE_PATH"])
            for result in storage.glob("rollout-0-*"):  # the runs share instances and keys: each starts afresh
                result.unlink()
            if name in ("threads", "local"):
                _stage(project, env_here, "rollout", "-i", "0", "--prefect")
            elif name == "dask":
                before = _executed(address)
                _stage(project, env_here, "rollout", "-i", "0", "--prefect")
                after = _executed(address)
                ran = {w: after[w] - before.get(w, 0) for w in after}
                assert len(ran) == 2 and all(n > 0 for n in ran.values()), ran  # both workers ran episodes
            else:
                stage = _stage(project, env_here, "rollout", "-i", "0", "--prefect", wait=False)
                _wait_for(lambda: any(storage.glob("rollout-0-*")), "a first episode")
                finished = {path.name for path in storage.glob("rollout-0-*")}
                os.killpg(workers[0].pid, signal.SIGKILL)  # in the middle of the stage
                out, _ = stage.communicate(timeout=900)
                assert stage.returncode == 0, out[-3000:]  # its episodes ran on the other worker
                again = _stage(project, env_here, "rollout", "-i", "0", "--prefect")
                stats = json.loads((project / "data" / "rollouts" / "iter_0" / "stats.json").read_text())
                assert len(finished) > 0 and stats["resumed_episodes"] == N, again[-2000:]  # every episode kept
                print(f"killed worker: {len(finished)} episodes kept before the kill, "
                      f"{stats['resumed_episodes']} of {N} reused by the rerun")
    reference = _episodes(runs["threads"])
    assert len(reference) == N and any(a == "student" for turns in reference.values() for a, _ in turns)
    assert _episodes(runs["dask"]) == reference  # same seeds, same coins, same actions
    assert _episodes(runs["killed"]) == reference
    assert _episodes(runs["local"]) == reference
    for name, project in runs.items():  # every run kept its own labels, under its own project
        assert any((project / ".daggerlm" / "label_cache").rglob("*.json")), name


def test_an_in_process_model_cannot_go_to_dask_workers(tmp_path):
    from daggerlm.dagger.stages import check_shippable
    from daggerlm.errors import InputError
    from tests.conftest import tiny_params

    p = tiny_params(tmp_path, **{"dagger.executor": {"kind": "dask"}})
    with pytest.raises(InputError, match=r"^dagger.executor.kind dask runs episodes on other processes, but "
                                         r"student.kind hf loads a model in this one: serve it"):
        check_shippable(p)

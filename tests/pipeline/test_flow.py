"""The Prefect flow on a temporary local server, run the README's way on a fresh copy of the repository:
stages run through DVC, a re-run skips them all, a killed run resumes without recomputing finished
episodes, and a fresh clone reproduces from the remote."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from tests.pipeline.project import GIT_ENV, fresh_copy, make_project

PREFECT_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PYTHONPATH": str(REPO)}
N_STAGES = 5 + 5 * 2
SIZES = ["instances.train.n=8", "dagger.episodes_per_iteration=4", "instances.eval.n=2", "student.tiny.vocab_size=512", "student.tiny.hidden_size=64",
         "student.tiny.intermediate_size=128", "student.tiny.num_hidden_layers=2", "student.tiny.corpus_instances=30",
         "student.tiny.corpus_episodes=2", "student.tiny.pretrain_steps=0", "student.sampling.max_new_tokens=32",
         "train.sft.num_train_epochs=2", "train.sft.learning_rate=0.003", "agent.step_limit=8",
         # two waves of two episodes per rollout, so a kill can land between finished and unfinished episodes
         "dagger.concurrency=2", "evaluation.concurrency=2"]
"""What a user shrinks on the command line to try the main job on a small machine: nothing else changes."""
README_FLOW = [sys.executable, "-m", "flows.dagger", *(arg for size in SIZES for arg in ("--set", size))]


def readme_project(tmp_path):
    """A fresh copy of the repository, run as the README runs it: the shipped params.yaml and dvc.yaml,
    `python -m flows.dagger` from its root, Prefect's settings from its prefect.toml."""
    project = fresh_copy(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1",
                "PYTHONPATH": str(project), **GIT_ENV})
    return project, env


def _flow(project, env, command=README_FLOW):
    start = time.monotonic()
    r = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr, time.monotonic() - start


def _sh(args, cwd, env):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, f"{' '.join(map(str, args))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _project(tmp_path):
    project, p, env = make_project(tmp_path)
    return project, p, {**env, **PREFECT_ENV, "PREFECT_HOME": str(tmp_path / "prefect")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run of the README's main job, shrunk: (project, params, env, output, seconds)."""
    from daggerlm.config import load_params

    project, env = readme_project(tmp_path_factory.mktemp("uninterrupted"))
    out, seconds = _flow(project, env)
    return project, load_params(project / "params.yaml"), env, out, seconds


def test_flow_runs_every_stage_then_dvc_is_up_to_date(finished):
    project, p, env, out, _ = finished
    assert f"stages run: {N_STAGES} of {N_STAGES}" in out
    assert "Data and pipelines are up to date" in _sh(["dvc", "status"], project, env)
    assert "Running stage" not in _sh(["dvc", "repro"], project, env)
    lock = (project / "dvc.lock").read_text()
    assert all(f"{stage}@1" in lock for stage in ("rollout", "label", "aggregate", "train", "evaluate"))
    metrics = json.loads(_sh(["dvc", "metrics", "show", "--json"], project, env))
    assert "resolve_rate" in json.dumps(metrics)
    rows = json.loads((project / "data" / "report" / "iterations.json").read_text())
    assert [r["iteration"] for r in rows] == [0, 1] and rows[1]["labels_new"] > 0  # new tasks, new states
    assert 0 < max(r["calls_per_state"] for r in rows) <= 1.0


def test_second_run_skips_every_stage_in_a_fraction_of_the_time(finished):
    project, _, env, _, first = finished
    out, second = _flow(project, env)
    assert f"stages run: 0 of {N_STAGES}" in out
    print(f"first run {first:.1f} s, second run {second:.1f} s, ratio {second / first:.2f}")
    assert second < 0.5 * first, (first, second)


def _rollout_results(prefect_home, k):
    return list((prefect_home / "storage").glob(f"rollout-{k}-*"))


LOGP = ("token_logp", "student_token_logp")
"""The student's log-probs of its own tokens: float noise apart between batchings (compared with a tolerance)."""


def _comparable(value):
    """What two runs may differ in: wall-clock fields (policy_s, env_s, wall_s), whether a label was a
    teacher call or a cache hit (labels the killed attempt paid for are hits after the restart), and
    the last digits of the student's log-probs, which are compared apart (`_log_probs`)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if not k.endswith("_s") and k not in ("cache", *LOGP)}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _log_probs(value) -> list[float]:
    """Every student log-prob in a trajectory, in order."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in ((v or []) if k in LOGP else _log_probs(v))]
    if isinstance(value, list):
        return [x for v in value for x in _log_probs(v)]
    return []


def _trajectories(path):
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [_comparable(r) for r in records], _log_probs(records)


def _examples(path):
    frame = pd.read_parquet(path)
    frame["teacher_meta"] = [json.dumps(_comparable(json.loads(m)), sort_keys=True) for m in frame["teacher_meta"]]
    logp = [x for row in frame.student_token_logp if row is not None for x in row]
    return frame.drop(columns="student_token_logp"), logp


def _same_data(a, b):
    for k in (0, 1):
        for stage in ("rollouts", "labels"):
            path = f"data/{stage}/iter_{k}/trajectories.jsonl"
            (records_a, logp_a), (records_b, logp_b) = _trajectories(a / path), _trajectories(b / path)
            assert records_a == records_b, path
            assert np.allclose(logp_a, logp_b, atol=1e-4), path
        path = f"data/aggregated/iter_{k}/train.parquet"
        (frame_a, logp_a), (frame_b, logp_b) = _examples(a / path), _examples(b / path)
        pd.testing.assert_frame_equal(frame_a, frame_b)
        assert np.allclose(logp_a, logp_b, atol=1e-4), path
        path = f"data/eval/iter_{k}/metrics.json"
        assert (a / path).read_text() == (b / path).read_text(), path
    path = "data/report/iterations.json"
    provenance = {"teacher_calls", "cache_hits", "calls_per_state"}
    rows = [[{k: v for k, v in r.items() if k not in provenance} for r in json.loads((d / path).read_text())]
            for d in (a, b)]
    assert rows[0] == rows[1]


def test_sigkill_mid_rollout_resumes_without_recomputing_finished_episodes(finished, tmp_path):
    reference, p = finished[0], finished[1]
    project, env = readme_project(tmp_path)
    home = project / ".prefect"
    proc = subprocess.Popen(README_FLOW, cwd=project, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not _rollout_results(home, 1):  # the first episodes of iteration 1's rollout are done
        assert proc.poll() is None and time.monotonic() < deadline, "the flow ended before rollout@1"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_at_kill = len(_rollout_results(home, 1))
    assert not (project / "data/rollouts/iter_1/trajectories.jsonl").exists()  # no partial output looks finished

    out, _ = _flow(project, env)
    stats = json.loads((project / "data/rollouts/iter_1/stats.json").read_text())
    n = p.dagger.episodes_per_iteration
    print(f"killed with {finished_at_kill} of {n} episodes done; "
          f"the restart reused {stats['resumed_episodes']}")
    assert finished_at_kill <= stats["resumed_episodes"] < n
    assert f"{stats['resumed_episodes']} of {n} items reused" in out
    _same_data(reference, project)


def test_fresh_clone_pulls_then_has_nothing_to_reproduce(finished, tmp_path):
    project, _, env, _, _ = finished
    remote = tmp_path / "remote"
    _sh(["dvc", "remote", "add", "-d", "-f", "store", str(remote)], project, env)
    _sh(["dvc", "push"], project, env)
    _sh(["git", "add", "-A"], project, env)
    _sh(["git", "commit", "-qm", "run"], project, env)
    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    _sh(["dvc", "pull"], clone, env)
    assert "Data and pipelines are up to date" in _sh(["dvc", "status"], clone, env)
    assert "Running stage" not in _sh(["dvc", "repro"], clone, env)
    metrics = (clone / "data/eval/iter_1/metrics.json").read_text()
    (clone / "data/eval/iter_1/metrics.json").unlink()
    out = _sh(["dvc", "repro", "-f", "evaluate@1"], clone, env)
    print("dvc repro -f evaluate@1 ran:", re.findall(r"Running stage '([^']+)'", out))
    assert "Running stage 'evaluate@1'" in out
    assert (clone / "data/eval/iter_1/metrics.json").read_text() == metrics
    assert json.loads(metrics)["n_instances"] > 0


def test_bad_ui_params_fail_before_any_stage(tmp_path):
    project, _, env = _project(tmp_path)
    code = ("from flows.dagger import dagger_flow; "
            f"dagger_flow({{'project': {str(project)!r}, 'beta': {{'kind': 'constant', 'value': 1.5}}}})")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "less than or equal to 1" in r.stdout + r.stderr
    assert not (project / "data").exists()


def test_ui_instance_counts_only_for_sources_that_have_one(tmp_path):
    from daggerlm.errors import InputError
    from flows.dagger import DaggerRun, write_params

    project, _, _ = _project(tmp_path)
    assert write_params(DaggerRun(project=str(project), train_instances=3)).instances.train.n == 3
    params = project / "params.yaml"
    data = yaml.safe_load(params.read_text())
    data["instances"]["eval"] = {"source": "file", "path": "eval.jsonl"}
    params.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="eval_instances: instances.eval has source 'file'"):
        write_params(DaggerRun(project=str(project), eval_instances=3))

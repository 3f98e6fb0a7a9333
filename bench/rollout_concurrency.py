"""Rollout throughput against one served student, next to the ceiling this machine allows.

One `transformers serve --continuous-batching` on a tiny student, started once; the pipeline's own
rollout stage (`run_stage`, what `daggerlm stage rollout` runs) collects the same synthetic train
instances again and again, each time cold (no episode, label or Prefect result kept):

- the thread pool at each `--concurrency` (1, 8, 32);
- the largest concurrency again, with at most `--request-slots` of its requests at the server at once
  (`student.server.endpoint.concurrency`);
- through Prefect at `--dask-concurrency`: its thread pool, then a local Dask cluster of 1 and 2 workers
  (`dagger.executor`), the student reached over HTTP from every worker.

Every run records its wall time and the CPU seconds of every process involved (this one, the server,
the sandboxes' commands, Dask's workers, Prefect's server) and, from the episodes, how long student
requests and sandbox commands took. The ceiling is the machine's cores ÷ the fewest CPU seconds an
episode cost in any run of this one (`derive`): episodes per minute with every core busy and no
overhead. JSON out; the markdown table goes to the README.

    .venv/bin/python bench/rollout_concurrency.py        # ~20 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daggerlm.config import load_params  # noqa: E402
from daggerlm.config.params import Params  # noqa: E402
from daggerlm.dagger.pipeline import run_stage  # noqa: E402
from daggerlm.dagger.rollout import read_trajectories  # noqa: E402
from daggerlm.dagger.stages import checkpoint, layout  # noqa: E402
from daggerlm.io import atomic_write_json, stable_hash  # noqa: E402
from daggerlm.serving.process import free_port, managed_server  # noqa: E402
from daggerlm.serving.student import server_command  # noqa: E402


def tree_cpu(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of this process tree: the server's, this process's own threads', and the rest
    (sandboxes, Dask's workers, Prefect's server), alive or already waited for."""
    me = psutil.Process()
    own = me.cpu_times()
    seconds = {"server": 0.0, "this_process": own.user + own.system, "other": own.children_user + own.children_system}
    for proc in me.children(recursive=True):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue  # gone since the listing: counted with its parent once waited for
        seconds["server" if proc.pid == server_pid else "other"] += t.user + t.system
        if proc.pid != server_pid:
            seconds["other"] += t.children_user + t.children_system
    return seconds


def _cold(p: Params, storage: Path) -> None:
    """Forget every episode, label and Prefect result of an earlier run, so each run does the same work."""
    for path in (layout(p).rollouts(0), Path(p.dagger.label_cache), storage):
        shutil.rmtree(path, ignore_errors=True)


def run(p: Params, label: str, server_pid: int, storage: Path, prefect: bool) -> dict:
    _cold(p, storage)
    before, start = tree_cpu(server_pid), time.monotonic()
    if prefect:
        from flows.stage import run_stage_flow

        stats = run_stage_flow(p, "rollout", 0)
    else:
        stats = run_stage(p, "rollout", 0)
    wall = time.monotonic() - start
    after = tree_cpu(server_pid)
    cpu = {k: round(after[k] - before[k], 1) for k in after}
    trajectories = read_trajectories(layout(p).rollouts(0) / "trajectories.jsonl")
    turns = [t for traj in trajectories for t in traj.turns]
    student = [t.policy_s for t in turns if t.actor == "student"]
    n = stats["episodes"]
    return {"run": label, "episodes": n, "seconds": round(wall, 1), "episodes_per_min": round(n / wall * 60, 2),
            "cpu_s": cpu, "cpu_s_per_episode": round(sum(cpu.values()) / n, 3),
            "cores_busy": round(sum(cpu.values()) / wall, 2),
            "student_request_s": {"mean": round(statistics.mean(student), 3), "max": round(max(student), 3)},
            "sandbox_command_s": round(statistics.mean(t.env_s for t in turns), 3),
            "episode_s": round(statistics.mean(t.wall_s for t in trajectories), 2),
            "episodes_hash": stable_hash([[(t.actor, t.response) for t in traj.turns] for traj in trajectories]),
            "student_turns": stats["student_turns"], "teacher_turns": stats["teacher_turns"]}


def student_requests(p: Params) -> list:
    """The student requests of the last rollout, as they were sent (history and sampling seed)."""
    from daggerlm.policies.base import PolicyRequest

    return [PolicyRequest(None, traj.messages[:t.prefix_len], {}, seed=t.meta.get("seed"))
            for traj in read_trajectories(layout(p).rollouts(0) / "trajectories.jsonl")
            for t in traj.turns if t.actor == "student"]


def server_alone(p: Params, server_pid: int, in_flight: int, requests: list) -> dict:
    """The server by itself, replaying a rollout's student requests `in_flight` at a time (no sandboxes,
    no episodes): whether a request costs the server more CPU when more requests share its batches."""
    from daggerlm.policies import make_policy

    endpoint = p.student.server.endpoint.model_copy(update={"concurrency": in_flight})
    policy = make_policy("openai", **endpoint.policy_kwargs(p.student.sampling))
    before, start = tree_cpu(server_pid)["server"], time.monotonic()
    done = policy.complete(requests)
    wall, cpu = time.monotonic() - start, tree_cpu(server_pid)["server"] - before
    return {"in_flight": in_flight, "requests": len(done), "seconds": round(wall, 2),
            "requests_per_s": round(len(done) / wall, 2), "server_cpu_s_per_request": round(cpu / len(done), 3),
            "latency_s": round(statistics.mean(c.meta["latency_s"] for c in done), 3),
            "prompt_tokens": round(statistics.mean(c.meta.get("usage", {}).get("prompt_tokens", 0) for c in done)),
            "errors": sum("error" in c.meta for c in done)}


@contextmanager
def prefect_server(work: Path) -> Iterator[None]:
    """A Prefect server the Prefect runs report to (else each flow would start a temporary one of its own)."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with managed_server(argv, port, work / "prefect.log", health_path="/api/health"):
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        yield
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # the flows' last logs, while the server still answers


def derive(report: dict) -> None:
    """The ceiling, each run's share of it and the table, from the runs. The ceiling is the cores ÷ the
    fewest CPU seconds an episode took in any run: episodes per minute with every core busy at the cheapest
    cost seen. (Concurrency 1's cost, as first planned, is no bound: there the server keeps both cores
    busy on one request, and batching makes an episode cheaper.)"""
    runs, cores = report["runs"], report["cores"]
    cheapest = min(runs, key=lambda r: r["cpu_s_per_episode"])
    report.update({"ceiling_run": cheapest["run"], "ceiling_cpu_s_per_episode": cheapest["cpu_s_per_episode"],
                   "ceiling_episodes_per_min": round(cores / cheapest["cpu_s_per_episode"] * 60, 2),
                   "ceiling_at_concurrency_1": round(cores / runs[0]["cpu_s_per_episode"] * 60, 2)})
    for r in runs:
        r["of_ceiling"] = round(r["episodes_per_min"] / report["ceiling_episodes_per_min"], 3)
        r["same_episodes_as_first"] = r["episodes_hash"] == runs[0]["episodes_hash"]
    report["table"] = table(report)


def table(report: dict) -> str:
    ceiling = report["ceiling_episodes_per_min"]
    rows = ["| run | episodes/min | of the ceiling | cores busy | CPU s / episode (server, agent) "
            "| student request s (mean) | sandbox command s | episode s |", "|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        cpu, n = r["cpu_s"], r["episodes"]
        rows.append(f"| {r['run']} | {r['episodes_per_min']:.1f} | {r['episodes_per_min'] / ceiling:.0%} "
                    f"| {r['cores_busy']:.2f} | {r['cpu_s_per_episode']:.2f} ({cpu['server'] / n:.2f}, "
                    f"{(cpu['this_process'] + cpu['other']) / n:.2f}) | {r['student_request_s']['mean']:.2f} "
                    f"| {r['sandbox_command_s']:.3f} | {r['episode_s']:.1f} |")
    per_episode = report["ceiling_cpu_s_per_episode"]
    rows += ["", f"Ceiling: {report['cores']} cores ÷ {per_episode:.2f} CPU s per episode ({report['ceiling_run']}, "
             f"the cheapest) = {ceiling:.1f} episodes/min (at concurrency 1's cost: "
             f"{report['ceiling_at_concurrency_1']:.1f}).", "",
             "The server alone (the student requests of one rollout replayed, no episodes):", "",
             "| requests in flight | requests/s | server CPU s / request | latency s |", "|---|---|---|---|"]
    rows += [f"| {r['in_flight']} | {r['requests_per_s']:.2f} | {r['server_cpu_s_per_request']:.3f} "
             f"| {r['latency_s']:.2f} |" for r in report.get("server_alone", [])]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--dask-concurrency", type=int, default=8, help="episodes at once in the Prefect and Dask runs")
    ap.add_argument("--dask-workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--request-slots", type=int, nargs="*", default=[8],
                    help="runs at the largest concurrency with at most this many requests at the server at once")
    ap.add_argument("--episodes", type=int, default=64, help="episodes per run (the same instances each time)")
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--server-arg", action="append", default=[], help="extra argument for `transformers serve`")
    ap.add_argument("--out", type=Path, default=Path("bench/results/rollout_concurrency.json"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    storage = work / "prefect-storage"
    os.environ.update({"PREFECT_HOME": str(work / "prefect"), "PREFECT_LOCAL_STORAGE_PATH": str(storage),
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    p = load_params(None, {
        "data": str(work / "data"), "student.model": str(work / "tiny"), "student.build_tiny": True,
        "student.kind": "openai", "student.sampling.max_new_tokens": a.max_new_tokens,
        "student.server.extra_args": a.server_arg,
        "instances.train": {"n": a.episodes, "seed": 123}, "dagger.beta": {"kind": "constant", "value": a.beta},
        "dagger.label_cache": str(work / "labels"), "agent.step_limit": a.steps,
        "agent.max_consecutive_format_errors": 0, "runtime.workdir": str(work)})
    run_stage(p, "instances")
    run_stage(p, "init-model")
    port = free_port()
    argv, model = server_command(p.student, checkpoint(p, 0), port)
    runs = []
    with managed_server(argv, port, work / "server.log") as url:
        server_pid = next(c.pid for c in psutil.Process().children() if str(port) in c.cmdline())
        served = p.model_copy(update={"student": p.student.model_copy(update={"server": (
            p.student.server.model_copy(update={"launch": "none", "endpoint": p.student.server.endpoint.model_copy(
                update={"base_url": url, "model": model})}))})})

        def at(concurrency: int, slots: int | None = None, **executor) -> Params:
            """`concurrency` episodes at once, at most `slots` of their requests at the server at once."""
            endpoint = served.student.server.endpoint
            student = served.student.model_copy(update={"server": served.student.server.model_copy(update={
                "endpoint": endpoint.model_copy(update={"concurrency": slots or endpoint.concurrency})})})
            return served.model_copy(update={"student": student, "dagger": served.dagger.model_copy(update={
                "concurrency": concurrency, "executor": served.dagger.executor.model_copy(update=executor)})})

        def measure(label: str, params: Params, prefect: bool) -> None:
            runs.append(run(params, label, server_pid, storage, prefect))
            print(runs[-1], flush=True)

        run(at(8), "warm-up", server_pid, storage, prefect=False)  # the server's first batches, not counted
        requests = student_requests(at(1))
        for c in a.concurrency:
            measure(f"threads ×{c}", at(c), prefect=False)
        alone = [server_alone(at(1), server_pid, n, requests) for n in a.concurrency]
        for row in alone:
            print(row, flush=True)
        for slots in a.request_slots:  # the most episodes, fewer requests in the server's batch
            c = max(a.concurrency)
            measure(f"threads ×{c}, ≤{slots} requests at the server", at(c, slots), prefect=False)
        with prefect_server(work):  # up before the Prefect runs are measured, and only for them
            c = a.dask_concurrency
            measure(f"Prefect, threads ×{c}", at(c), prefect=True)
            for w in a.dask_workers:
                measure(f"Prefect, Dask {w} worker{'s' * (w > 1)} ×{c}", at(c, kind="dask", workers=w), prefect=True)
    report = {"bench": "rollout_concurrency", "server": " ".join(["transformers serve --continuous-batching",
                                                                   *p.student.server.extra_args]).strip(),
              "argv": argv[1:], "model": "tiny student (built here)", "beta": a.beta, "step_limit": a.steps,
              "max_new_tokens": a.max_new_tokens, "machine": platform.platform(),
              "cores": len(os.sched_getaffinity(0)), "runs": runs, "server_alone": alone}
    derive(report)
    atomic_write_json(a.out, report)
    print(report["table"])


if __name__ == "__main__":
    main()

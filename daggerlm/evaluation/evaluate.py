"""Evaluate a policy on instances: run episodes, grade the final patches, write the results.

Outputs in `out_dir` (each written atomically):
- `results/<instance_id>.json`: trajectory + grading report, one per instance, written as soon as the
  episode is graded; a re-run skips instances whose result was made under the same run key, so an
  interrupted evaluation resumes;
- `predictions.jsonl` (swebench format), `metrics.json`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from statistics import mean

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from daggerlm.agent.scaffold import run_episode
from daggerlm.agent.trajectory import Trajectory
from daggerlm.config import AgentConfig, RuntimeConfig
from daggerlm.evaluation.grading import grade
from daggerlm.instances.schema import Instance
from daggerlm.io import atomic_write_json, atomic_write_jsonl, stable_hash
from daggerlm.policies.base import Policy

METRICS_FORMAT = "daggerlm.metrics/1"
RESULT_FORMAT = "daggerlm.eval_result/1"


def _safe_name(instance_id: str) -> str:
    return instance_id.replace("/", "__")


def evaluate_instance(instance: Instance, policy: Policy, runtime: RuntimeConfig, agent: AgentConfig) -> dict:
    trajectory = run_episode(instance, {"student": policy}, lambda t: "student", runtime=runtime, agent=agent)
    return {"trajectory": trajectory.model_dump(mode="json"), "report": grade(instance, trajectory.patch, runtime)}


def compute_metrics(results: Sequence[dict]) -> dict:
    trajectories = [Trajectory.model_validate(r["trajectory"]) for r in results]
    n = len(results)
    turns = [t.n_turns for t in trajectories]
    total_turns = sum(turns)
    resolved = sum(bool(r["report"]["resolved"]) for r in results)
    return {
        "format": METRICS_FORMAT,
        "n_instances": n,
        "resolved": resolved,
        "resolve_rate": resolved / n if n else 0.0,
        "mean_turns": mean(turns) if n else 0.0,
        "min_turns": min(turns, default=0),
        "max_turns": max(turns, default=0),
        "format_error_rate": sum(t.n_format_errors for t in trajectories) / total_turns if total_turns else 0.0,
        "timeouts": sum(turn.timed_out for t in trajectories for turn in t.turns),
        "exit_statuses": dict(Counter(t.exit_status for t in trajectories)),
        "patch_applied_rate": sum(r["report"]["patch_successfully_applied"] for r in results) / n if n else 0.0,
    }


def evaluate(instances: Sequence[Instance], policy: Policy, out_dir: str | Path, *, runtime: RuntimeConfig,
             agent: AgentConfig, workers: int = 1, model_name: str = "daggerlm",
             on_result: Callable[[dict], None] | None = None) -> dict:
    """Run, grade and record every instance; returns the metrics (also in `out_dir/metrics.json`)."""
    out = Path(out_dir)
    results_dir = out / "results"
    run_key = stable_hash({"policy": policy.identity, "runtime": runtime.model_dump(exclude={"workdir"}),
                           "agent": agent.model_dump()})
    results: dict[str, dict] = {}
    todo = []
    for inst in instances:
        path = results_dir / f"{_safe_name(inst.instance_id)}.json"
        key = stable_hash({"run": run_key, "instance": inst.model_dump(mode="json")})
        cached = json.loads(path.read_text()) if path.is_file() else None
        if cached and cached.get("key") == key:
            results[inst.instance_id] = cached
        else:
            todo.append((inst, path, key))

    columns = (TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("resolved {task.fields[resolved]}"))
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task("episodes", total=len(instances), completed=len(results),
                                resolved=sum(r["report"]["resolved"] for r in results.values()))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(evaluate_instance, inst, policy, runtime, agent): (inst, path, key)
                       for inst, path, key in todo}
            for future in as_completed(futures):
                inst, path, key = futures[future]
                result = {"format": RESULT_FORMAT, "key": key, **future.result()}
                atomic_write_json(path, result)
                results[inst.instance_id] = result
                if on_result:
                    on_result(result)
                progress.update(bar, advance=1, resolved=sum(r["report"]["resolved"] for r in results.values()))

    ordered = [results[i.instance_id] for i in instances]
    atomic_write_jsonl(out / "predictions.jsonl", (
        {"instance_id": r["trajectory"]["instance_id"], "model_name_or_path": model_name,
         "model_patch": r["trajectory"]["patch"]} for r in ordered))
    metrics = compute_metrics(ordered)
    atomic_write_json(out / "metrics.json", metrics)
    return metrics

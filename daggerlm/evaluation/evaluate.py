"""Evaluate a policy on instances: run episodes, grade the final patches, write the results.

Outputs in `out_dir` (each written atomically):
- `results/<instance_id>.json`: trajectory + grading report, written as soon as the episode is
  graded; a re-run reuses results made under the same key, so an interrupted evaluation resumes;
- `predictions.jsonl` (swebench format), `metrics.json`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from statistics import mean

from daggerlm.agent.runner import ItemRunner, LocalRunner, check_failures, progress_bar
from daggerlm.agent.scaffold import run_episode
from daggerlm.agent.trajectory import Trajectory, split_timings
from daggerlm.config import AgentConfig, RuntimeConfig
from daggerlm.evaluation.grading import grade
from daggerlm.evaluation.recovery import recovery_stats
from daggerlm.instances.schema import Instance
from daggerlm.io import TIMINGS, ResultStore, atomic_write_json, atomic_write_jsonl, stable_hash
from daggerlm.policies.base import Policy
from daggerlm.policies.batching import LockstepBatcher

METRICS_FORMAT = "daggerlm.metrics/1"


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
        **recovery_stats(zip(trajectories, (bool(r["report"]["resolved"]) for r in results))),
    }


def evaluate(instances: Sequence[Instance], policy: Policy, out_dir: str | Path, *, runtime: RuntimeConfig,
             agent: AgentConfig, concurrency: int = 1, model_name: str = "daggerlm", seed: int = 0,
             runner: ItemRunner | None = None, max_failed_share: float = 0.0) -> dict:
    """Run, grade and record every instance; returns the metrics (also in `out_dir/metrics.json`).
    Episodes whose policy could not be reached are left out (and retried by the next run); more
    than `max_failed_share` of them fail the evaluation instead of counting as unresolved."""
    out = Path(out_dir)
    store = ResultStore(out / "results")
    run_key = stable_hash({"policy": policy.identity, "runtime": runtime.model_dump(exclude={"workdir"}),
                           "agent": agent.model_dump(), "seed": seed})
    keys = [f"evaluate-{stable_hash({'run': run_key, 'instance': i.model_dump(mode='json')})}" for i in instances]
    names = [i.instance_id for i in instances]
    batcher = LockstepBatcher(policy)

    def episode(inst: Instance) -> dict:
        trajectory = run_episode(inst, {"student": batcher}, lambda t: "student", runtime=runtime, agent=agent,
                                 seed=seed)
        report = grade(inst, trajectory.patch, runtime)
        record, timings = split_timings(trajectory.model_dump(mode="json"))
        return {"trajectory": record, "report": report, TIMINGS: timings}

    with progress_bar("evaluate") as progress:
        resolved = 0
        bar = progress.add_task("", total=len(instances), info="resolved 0")

        def done(result: dict) -> None:
            nonlocal resolved
            resolved += bool(result["report"]["resolved"])
            progress.update(bar, advance=1, info=f"resolved {resolved}")

        outcome = (runner or LocalRunner(store.root))(instances, names, keys, episode, concurrency=concurrency,
                                                      batchers=[batcher], on_done=done)
    check_failures("evaluate", outcome, len(instances), max_failed_share)
    ordered = outcome.results
    if runner is not None:  # another runner keeps results in its own cache: write the per-instance files here
        key_of = dict(zip(names, keys))
        for result in ordered:
            name = result["trajectory"]["instance_id"]
            store.put(name, key_of[name], result)
    atomic_write_jsonl(out / "predictions.jsonl", (
        {"instance_id": r["trajectory"]["instance_id"], "model_name_or_path": model_name,
         "model_patch": r["trajectory"]["patch"]} for r in ordered))
    metrics = {**compute_metrics(ordered), "failed_episodes": len(outcome.failed)}
    atomic_write_json(out / "metrics.json", metrics)
    return metrics

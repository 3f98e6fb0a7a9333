"""Collect one iteration's rollouts with turn-level mixing.

Every turn a seeded coin (or the roll-in rule) picks the actor. Teacher turns go through the label
cache, so the teacher's action is also that state's label; student turns are labeled later, in the
batched labeling stage. Each finished episode is kept at once (resume after a crash).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from daggerlm.agent.runner import ItemRunner, LocalRunner, check_failures, progress_bar
from daggerlm.agent.scaffold import run_episode
from daggerlm.agent.trajectory import TRAJECTORY_FORMAT, Trajectory, join_timings, split_timings
from daggerlm.config import AgentConfig, RuntimeConfig
from daggerlm.dagger.label_cache import CachedTeacher
from daggerlm.dagger.schedules import coin_schedule
from daggerlm.errors import InputError
from daggerlm.instances.schema import Instance
from daggerlm.io import TIMINGS_FILE, atomic_write_json, atomic_write_jsonl, stable_hash
from daggerlm.policies.base import Policy
from daggerlm.policies.batching import LockstepBatcher


def collect_rollouts(instances: Sequence[Instance], student: Policy, teacher: CachedTeacher, out_dir: str | Path, *,
                     iteration: int, beta: float, seed: int, runtime: RuntimeConfig, agent: AgentConfig,
                     concurrency: int = 8, rollin_turns: int | None = None, runner: ItemRunner | None = None,
                     max_failed_share: float = 0.0) -> dict:
    """Run one episode per instance; write `trajectories.jsonl` and `stats.json` to `out_dir`.

    An episode's key names everything it depends on (student checkpoint hash and sampling, teacher,
    iteration, β, seed, roll-in, scaffold, instance); `runner` reuses episodes finished under the
    same key (default: JSON files in `out_dir/episodes/`). Episodes whose policy could not be
    reached are left out and retried by the next run; more than `max_failed_share` of them fail the stage.
    """
    out = Path(out_dir)
    runner = runner or LocalRunner(out / "episodes")
    run_key = stable_hash({"format": TRAJECTORY_FORMAT, "student": student.identity, "teacher": teacher.identity, "iteration": iteration,
                           "beta": beta, "seed": seed, "rollin": rollin_turns, "agent": agent.model_dump(),
                           "runtime": runtime.model_dump(exclude={"workdir"})})
    keys = [f"rollout-{iteration}-{stable_hash({'run': run_key, 'instance': i.model_dump(mode='json')})}"
            for i in instances]
    batcher = LockstepBatcher(student)

    def episode(inst: Instance) -> dict:
        schedule = coin_schedule(seed, iteration, inst.instance_id, beta, rollin_turns)
        return run_episode(inst, {"teacher": teacher, "student": batcher}, schedule, runtime=runtime, agent=agent,
                           iteration=iteration, beta=beta, seed=seed).model_dump(mode="json")

    with progress_bar(f"rollout {iteration}") as progress:
        bar = progress.add_task("", total=len(instances), info=f"β={beta:.2f}")
        outcome = runner(instances, [i.instance_id for i in instances], keys, episode, concurrency=concurrency,
                         batchers=[batcher], on_done=lambda _: progress.update(bar, advance=1))

    check_failures(f"rollout {iteration}", outcome, len(instances), max_failed_share)
    trajectories = [Trajectory.model_validate(r) for r in outcome.results]
    turns = [t for traj in trajectories for t in traj.turns]
    stats = {
        "iteration": iteration, "beta": beta, "episodes": len(trajectories), "resumed_episodes": outcome.reused,
        "failed_episodes": len(outcome.failed),
        "turns": len(turns), "teacher_turns": sum(t.actor == "teacher" for t in turns),
        "student_turns": sum(t.actor == "student" for t in turns),
        "teacher_calls": sum(t.actor == "teacher" and t.meta.get("cache") == "miss" for t in turns),
        "cache_hits": sum(t.actor == "teacher" and t.meta.get("cache") == "hit" for t in turns),
        "student_batches": len(batcher.batch_sizes),
        "mean_student_batch": sum(batcher.batch_sizes) / len(batcher.batch_sizes) if batcher.batch_sizes else 0.0,
        "exit_statuses": {s: sum(t.exit_status == s for t in trajectories) for s in {t.exit_status for t in trajectories}},
    }
    write_trajectories(out / "trajectories.jsonl", trajectories)
    atomic_write_json(out / "stats.json", stats)
    return stats


def write_trajectories(path: str | Path, trajectories: list[Trajectory]) -> None:
    """The trajectories as JSON lines, their seconds in `timings.jsonl` beside them (`io.TIMINGS`)."""
    path = Path(path)
    records, timings = zip(*(split_timings(t.model_dump(mode="json")) for t in trajectories)) if trajectories else ((), ())
    atomic_write_jsonl(path.with_name(TIMINGS_FILE), timings)
    atomic_write_jsonl(path, records)


def read_trajectories(path: str | Path) -> list[Trajectory]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: trajectories not found (run the rollout stage first)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    aside = path.with_name(TIMINGS_FILE)
    timings = [json.loads(line) for line in aside.read_text().splitlines()] if aside.is_file() else []
    if len(timings) != len(records):  # none kept (a `dvc pull`), or not these
        timings = [None] * len(records)
    return [Trajectory.model_validate(join_timings(r, t)) for r, t in zip(records, timings)]

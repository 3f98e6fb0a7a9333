"""Recovery: did an agent whose change failed the tests still resolve the instance?

A setback is a test run that failed on a modified worktree (the agent's edit did not fix the bug,
or broke something else). Behaviour cloning never shows the student such states; DAgger labels
them, so its students should recover more often. Measured on evaluation episodes.
"""

from __future__ import annotations

from collections.abc import Iterable

from daggerlm.agent.trajectory import Trajectory


def had_setback(traj: Trajectory) -> bool:
    return any(turn.action and "pytest" in turn.action and turn.returncode not in (0, None)
               and turn.snapshot.get("diff", "").strip() for turn in traj.turns)


def recovery_stats(episodes: Iterable[tuple[Trajectory, bool]]) -> dict:
    """From (trajectory, resolved) pairs: how many had a setback, and how many of those still resolved."""
    setbacks = [resolved for traj, resolved in episodes if had_setback(traj)]
    return {"setbacks": len(setbacks), "recovered": sum(setbacks),
            "recovery_rate": sum(setbacks) / len(setbacks) if setbacks else None}

"""Recovery: did an agent whose change failed the tests still resolve the instance?

A setback is a test run that failed after the agent tried a fix: the worktree was modified, or an
editing command (`sed -i`, `git apply`, `patch`, a redirect) ran earlier in the episode, even one
that missed its file. Behaviour cloning never shows the student such states; DAgger labels them,
so its students should recover more often. Measured on evaluation episodes.
"""

from __future__ import annotations

from collections.abc import Iterable

from daggerlm.actions import EDIT_COMMAND
from daggerlm.agent.trajectory import Trajectory


def setback_turn(traj: Trajectory) -> int | None:
    """Index of the first turn whose test run failed after a fix was tried; None if none did."""
    tried = False
    for turn in traj.turns:
        action = turn.action or ""
        modified = tried or turn.snapshot.get("diff", "").strip()
        if "pytest" in action and turn.returncode not in (0, None) and modified:
            return turn.index
        tried = tried or bool(EDIT_COMMAND.search(action))
    return None


def had_setback(traj: Trajectory) -> bool:
    return setback_turn(traj) is not None


def states_after_setback(trajectories: Iterable[Trajectory]) -> set[tuple[str, int]]:
    """(instance, turn) of every state that follows a setback: what a teacher labels there teaches
    recovery. Behaviour cloning's teacher-only rollouts have none."""
    out = set()
    for traj in trajectories:
        first = setback_turn(traj)
        if first is not None:
            out |= {(traj.instance_id, t.index) for t in traj.turns if t.index > first}
    return out


def recovery_stats(episodes: Iterable[tuple[Trajectory, bool]]) -> dict:
    """From (trajectory, resolved) pairs: how many had a setback, and how many of those still resolved."""
    setbacks = [resolved for traj, resolved in episodes if had_setback(traj)]
    return {"setbacks": len(setbacks), "recovered": sum(setbacks),
            "recovery_rate": sum(setbacks) / len(setbacks) if setbacks else None}

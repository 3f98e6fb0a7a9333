"""Recovery: did an agent whose change failed the tests still resolve the instance?

A setback is a test run that failed after the agent tried a fix: the worktree was modified, or an
editing command (`sed -i`, `git apply`, `patch`, a redirect) ran earlier in the episode, even one
that missed its file. Behaviour cloning never shows the student such states; DAgger labels them,
so its students should recover more often. Measured on evaluation episodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from daggerlm.agent.trajectory import Trajectory

EDIT = re.compile(r"\bsed\s+(-\w+\s+)*-i|\bgit\s+apply\b|\bpatch\b|>")


def had_setback(traj: Trajectory) -> bool:
    tried = False
    for turn in traj.turns:
        action = turn.action or ""
        modified = tried or turn.snapshot.get("diff", "").strip()
        if "pytest" in action and turn.returncode not in (0, None) and modified:
            return True
        tried = tried or bool(EDIT.search(action))
    return False


def recovery_stats(episodes: Iterable[tuple[Trajectory, bool]]) -> dict:
    """From (trajectory, resolved) pairs: how many had a setback, and how many of those still resolved."""
    setbacks = [resolved for traj, resolved in episodes if had_setback(traj)]
    return {"setbacks": len(setbacks), "recovered": sum(setbacks),
            "recovery_rate": sum(setbacks) / len(setbacks) if setbacks else None}

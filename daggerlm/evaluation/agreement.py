"""Where a student departs from its teacher: agreement by kind of state, on recorded episodes.

DAgger gives the student the teacher's action at the states the student reaches, including the
recovery after a failing test run. Whether the student then takes that action is what decides if
the labels helped; this measures it, state kind by state kind (the state is named by the previous
action and what the worktree holds), by asking the teacher again at every recorded state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from daggerlm.actions import EDIT_COMMAND, SUBMIT_MARKER, UNDO_COMMAND, extract_action
from daggerlm.agent.trajectory import Trajectory, Turn
from daggerlm.instances.schema import Instance
from daggerlm.policies.oracle import normalize_diff

Decide = Callable[[Instance, list[dict[str, str]], dict[str, str]], str]
"""The teacher as a function of (instance, message history, snapshot) -> response."""


def action_kind(action: str | None) -> str:
    """What an action does: format error (no action), tests, undo, edit, search, submit or other."""
    if action is None:
        return "format error"
    if "pytest" in action:
        return "tests"
    if UNDO_COMMAND.search(action):
        return "undo"
    if EDIT_COMMAND.search(action):
        return "edit"
    if "grep" in action:
        return "search"
    return "submit" if action.strip() == f"echo {SUBMIT_MARKER}" else "other"  # garbled ones do not submit


def previous_step(turn: Turn | None) -> str:
    if turn is None:
        return "start"
    kind = action_kind(turn.action)
    if kind == "tests":
        return "tests passed" if turn.returncode == 0 else "tests failed"
    return kind


def worktree(turn: Turn, inst: Instance) -> str:
    diff = normalize_diff(turn.snapshot.get("diff", ""))
    return "at base" if not diff else "the fix" if diff == normalize_diff(inst.patch) else "another change"


def state_kind(traj: Trajectory, i: int, inst: Instance) -> str:
    """E.g. 'tests failed, another change': the state the action at turn i was chosen in."""
    return f"{previous_step(traj.turns[i - 1] if i else None)}, {worktree(traj.turns[i], inst)}"


def agreement_by_state(trajectories: Iterable[Trajectory], instances: dict[str, Instance],
                       decide: Decide) -> dict[str, dict[str, int]]:
    """Per state kind: how many recorded actions there were and how many equal the teacher's."""
    total, agree = Counter(), Counter()
    for traj in trajectories:
        inst = instances[traj.instance_id]
        for i, turn in enumerate(traj.turns):
            kind = state_kind(traj, i, inst)
            wanted = extract_action(decide(inst, traj.messages[: turn.prefix_len], turn.snapshot))
            total[kind] += 1
            agree[kind] += (turn.action or "").strip() == (wanted or "").strip()
    return {kind: {"agree": agree[kind], "total": total[kind]} for kind in sorted(total)}


def actions_by_state(trajectories: Iterable[Trajectory], instances: dict[str, Instance]) -> dict[str, dict[str, int]]:
    """Per state kind, how often the agent took each kind of action there: what a student does
    instead of the teacher's action (after a failing test run: undo, or edit again, or submit?)."""
    counts: dict[str, Counter] = {}
    for traj in trajectories:
        inst = instances[traj.instance_id]
        for i, turn in enumerate(traj.turns):
            counts.setdefault(state_kind(traj, i, inst), Counter())[action_kind(turn.action)] += 1
    return {kind: dict(sorted(c.items())) for kind, c in sorted(counts.items())}

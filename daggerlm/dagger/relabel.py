"""Label every visited state with the teacher's action.

Teacher-executed turns already carry their label (the teacher's own response, from the rollout).
Student-executed states are sent to the teacher here, in one batch, through the label cache: a
state labeled before (this iteration or an earlier one) costs no teacher call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from daggerlm.agent.trajectory import Trajectory
from daggerlm.dagger.label_cache import CachedTeacher, state_hash
from daggerlm.instances.schema import Instance
from daggerlm.policies.base import PolicyRequest

LABEL_FORMAT = "daggerlm.labeled_example/1"


def state_request(traj: Trajectory, turn_index: int, instance: Instance) -> PolicyRequest:
    turn = traj.turns[turn_index]
    return PolicyRequest(instance, traj.messages[: turn.prefix_len], turn.snapshot)


def relabel(trajectories: Sequence[Trajectory], instances: dict[str, Instance],
            teacher: CachedTeacher) -> tuple[list[Trajectory], list[dict]]:
    """Fill every missing label; return the labeled trajectories and one example row per visited state."""
    labeled = [t.model_copy(deep=True) for t in trajectories]
    todo = [(traj, i) for traj in labeled for i, turn in enumerate(traj.turns) if turn.label is None]
    requests = [state_request(traj, i, instances[traj.instance_id]) for traj, i in todo]
    for (traj, i), completion in zip(todo, teacher.complete(requests)):
        traj.turns[i].label = completion.text
        traj.turns[i].meta = {**traj.turns[i].meta, "label_meta": completion.meta}
    rows = []
    for traj in labeled:
        inst = instances[traj.instance_id]
        for i, turn in enumerate(traj.turns):
            request = state_request(traj, i, inst)
            rows.append({
                "format": LABEL_FORMAT, "state_hash": state_hash(request), "instance_id": traj.instance_id,
                "iteration": traj.iteration, "turn": turn.index, "actor": turn.actor,
                "prompt": request.messages, "completion": [{"role": "assistant", "content": turn.label}],
                "student_response": turn.response if turn.actor == "student" else None,
                "teacher": teacher.identity,
                "teacher_meta": json.dumps(turn.meta.get("label_meta", turn.meta), sort_keys=True),
            })
    return labeled, rows

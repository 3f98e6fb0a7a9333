"""Label every visited state with the teacher's action.

Teacher-executed turns already carry their label (the teacher's own response, from the rollout).
Student-executed states are sent to the teacher here, one batch per trajectory, trajectories
concurrently, through the label cache: a state labeled before (this iteration or an earlier one,
or by a run that was interrupted) costs no teacher call. A trajectory whose teacher call failed is
not kept (its successful labels are, in the cache) and is asked again by the next run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from daggerlm.agent.runner import ItemRunner, LocalRunner, check_failures
from daggerlm.agent.trajectory import Trajectory
from daggerlm.dagger.label_cache import CachedTeacher, state_hash
from daggerlm.errors import InfrastructureError
from daggerlm.instances.schema import Instance
from daggerlm.io import stable_hash
from daggerlm.policies.base import PolicyRequest

LABEL_FORMAT = "daggerlm.labeled_example/1"


def state_request(traj: Trajectory, turn_index: int, instance: Instance) -> PolicyRequest:
    turn = traj.turns[turn_index]
    return PolicyRequest(instance, traj.messages[: turn.prefix_len], turn.snapshot)


def relabel(trajectories: Sequence[Trajectory], instances: dict[str, Instance], teacher: CachedTeacher, *,
            concurrency: int = 8, runner: ItemRunner | None = None,
            max_failed_share: float = 0.0) -> tuple[list[Trajectory], list[dict]]:
    """Fill every missing label; return the labeled trajectories and one example row per visited
    state. Trajectories whose labeling failed are left out; more than `max_failed_share` of them
    fail the stage."""

    def label(traj: Trajectory) -> dict:
        traj = traj.model_copy(deep=True)
        todo = [i for i, turn in enumerate(traj.turns) if turn.label is None]
        requests = [state_request(traj, i, instances[traj.instance_id]) for i in todo]
        for i, completion in zip(todo, teacher.complete(requests) if requests else []):
            if completion.meta.get("error"):
                raise InfrastructureError(f"{traj.instance_id}, turn {i}: the teacher failed: {completion.meta['error']}")
            traj.turns[i].label = completion.text
            traj.turns[i].meta = {**traj.turns[i].meta, "label_meta": completion.meta}
        return traj.model_dump(mode="json")

    keys = [f"label-{t.iteration}-" + stable_hash({"format": LABEL_FORMAT, "trajectory": t.model_dump(mode="json"),
                                                   "teacher": teacher.identity}) for t in trajectories]
    outcome = (runner or LocalRunner(None))(trajectories, [t.instance_id for t in trajectories], keys, label,
                                            concurrency=concurrency)
    check_failures("label", outcome, len(trajectories), max_failed_share)
    labeled = [Trajectory.model_validate(r) for r in outcome.results]
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
                "student_token_ids": turn.token_ids, "student_token_logp": turn.token_logp,  # student turns only
                "teacher": teacher.identity,
                "teacher_meta": json.dumps(turn.meta.get("label_meta", turn.meta), sort_keys=True),
            })
    return labeled, rows


def teacher_usage(labeled: Sequence[Trajectory], price_input_per_mtok: float = 0.0,
                  price_output_per_mtok: float = 0.0) -> dict:
    """Tokens and cost of the teacher calls this iteration made (rollout turns the teacher acted in and
    relabeled states; cache hits cost nothing)."""
    metas = [m for traj in labeled for turn in traj.turns
             for m in (turn.meta.get("label_meta"), turn.meta if turn.actor == "teacher" else None)
             if m and m.get("cache") == "miss"]
    prompt = sum((m.get("usage") or {}).get("prompt_tokens", 0) for m in metas)
    completion = sum((m.get("usage") or {}).get("completion_tokens", 0) for m in metas)
    return {"teacher_prompt_tokens": prompt, "teacher_completion_tokens": completion,
            "teacher_cost_usd": round((prompt * price_input_per_mtok + completion * price_output_per_mtok) / 1e6, 6)}

"""Label every visited state with the teacher's action.

Teacher-executed turns already carry their label (the teacher's own response, from the rollout).
Student-executed states are sent to the teacher here, one batch per trajectory, trajectories
concurrently, through the label cache: a state labeled before (this iteration or an earlier one,
or by a run that was interrupted) costs no teacher call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from daggerlm.agent.runner import ItemRunner, LocalRunner
from daggerlm.agent.trajectory import Trajectory
from daggerlm.dagger.label_cache import CachedTeacher, state_hash
from daggerlm.instances.schema import Instance
from daggerlm.io import stable_hash
from daggerlm.policies.base import PolicyRequest

LABEL_FORMAT = "daggerlm.labeled_example/1"


def state_request(traj: Trajectory, turn_index: int, instance: Instance) -> PolicyRequest:
    turn = traj.turns[turn_index]
    return PolicyRequest(instance, traj.messages[: turn.prefix_len], turn.snapshot)


def relabel(trajectories: Sequence[Trajectory], instances: dict[str, Instance], teacher: CachedTeacher, *,
            concurrency: int = 8, runner: ItemRunner | None = None) -> tuple[list[Trajectory], list[dict]]:
    """Fill every missing label; return the labeled trajectories and one example row per visited state."""

    def label(traj: Trajectory) -> dict:
        traj = traj.model_copy(deep=True)
        todo = [i for i, turn in enumerate(traj.turns) if turn.label is None]
        requests = [state_request(traj, i, instances[traj.instance_id]) for i in todo]
        for i, completion in zip(todo, teacher.complete(requests) if requests else []):
            if not completion.meta.get("error"):  # a failed label stays None, its error in label_meta
                traj.turns[i].label = completion.text
            traj.turns[i].meta = {**traj.turns[i].meta, "label_meta": completion.meta}
        return traj.model_dump(mode="json")

    keys = [f"label-{t.iteration}-{stable_hash({'trajectory': t.model_dump(mode='json'), 'teacher': teacher.identity})}"
            for t in trajectories]
    outcome = (runner or LocalRunner(None))(trajectories, [t.instance_id for t in trajectories], keys, label,
                                            concurrency=concurrency)
    labeled = [Trajectory.model_validate(r) for r in outcome.results]
    # a failed label is never final: its trajectory is asked again here (also when a re-run reused it);
    # what succeeds is kept by the label cache
    unfinished = [i for i, t in enumerate(labeled) if any(turn.label is None for turn in t.turns)]
    if unfinished:
        with ThreadPoolExecutor(max(1, min(concurrency, len(unfinished)))) as pool:
            for i, result in zip(unfinished, pool.map(label, [labeled[i] for i in unfinished])):
                labeled[i] = Trajectory.model_validate(result)
    rows = []
    for traj in labeled:
        inst = instances[traj.instance_id]
        for i, turn in enumerate(traj.turns):
            if turn.label is None:  # the teacher failed on this state: no example (counted in the stage's stats)
                continue
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


def teacher_usage(labeled: Sequence[Trajectory], price_input_per_mtok: float = 0.0,
                  price_output_per_mtok: float = 0.0) -> dict:
    """Tokens and cost of the teacher calls this iteration made (rollout turns the teacher acted in and
    relabeled states; cache hits cost nothing), and the states the teacher failed to label."""
    metas = [m for traj in labeled for turn in traj.turns
             for m in (turn.meta.get("label_meta"), turn.meta if turn.actor == "teacher" else None)
             if m and m.get("cache") == "miss"]
    prompt = sum((m.get("usage") or {}).get("prompt_tokens", 0) for m in metas)
    completion = sum((m.get("usage") or {}).get("completion_tokens", 0) for m in metas)
    return {"teacher_prompt_tokens": prompt, "teacher_completion_tokens": completion,
            "teacher_cost_usd": round((prompt * price_input_per_mtok + completion * price_output_per_mtok) / 1e6, 6),
            "label_errors": sum(turn.label is None for traj in labeled for turn in traj.turns)}

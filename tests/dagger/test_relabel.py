"""Relabeling with a deliberately bad student; teacher calls per state; the label cache; determinism."""

import pytest

from daggerlm.actions import extract_action
from daggerlm.config import AgentConfig
from daggerlm.dagger.aggregate import aggregate, read_parquet, write_parquet
from daggerlm.dagger.label_cache import CachedTeacher, LabelCache
from daggerlm.dagger.relabel import relabel
from daggerlm.dagger.rollout import collect_rollouts
from daggerlm.errors import InfrastructureError
from daggerlm.instances.synthetic import generate
from daggerlm.policies import make_policy
from daggerlm.policies.base import Completion
from daggerlm.policies.oracle import Oracle
from daggerlm.config import Sampling
from tests.helpers import WrongActionPolicy

import pandas as pd


def _rollout(tmp_path, name, student, teacher, instances, runtime, iteration=1, beta=0.5):
    return collect_rollouts(instances, student, teacher, tmp_path / name, iteration=iteration, beta=beta, seed=3,
                            runtime=runtime, agent=AgentConfig(step_limit=10), concurrency=4)


def test_bad_student_states_get_the_oracles_label(tmp_path, runtime):
    instances = generate(6, "train", seed=8)
    by_id = {i.instance_id: i for i in instances}
    teacher = CachedTeacher(make_policy("oracle"), LabelCache(tmp_path / "cache"))
    stats = _rollout(tmp_path, "r", WrongActionPolicy(1), teacher, instances, runtime)
    from daggerlm.dagger.rollout import read_trajectories

    trajectories = read_trajectories(tmp_path / "r" / "trajectories.jsonl")
    assert stats["student_turns"] > 5 and stats["teacher_turns"] > 5
    assert all(t.label is None for tr in trajectories for t in tr.turns if t.actor == "student")
    labeled, rows = relabel(trajectories, by_id, teacher)
    oracle = Oracle()
    checked = differs = own_action_in_prompt = 0
    for traj in labeled:
        inst = by_id[traj.instance_id]
        for i, turn in enumerate(traj.turns):
            prompt = traj.messages[: turn.prefix_len]
            assert turn.label == oracle.decide(inst, prompt, turn.snapshot)  # the teacher's action for this state
            if turn.actor != "student":
                continue
            checked += 1
            if extract_action(turn.response) != extract_action(turn.label):
                differs += 1
            if i > 0 and traj.turns[i - 1].actor == "student":
                assert traj.turns[i - 1].response in [m["content"] for m in prompt]
                own_action_in_prompt += 1
    assert checked == stats["student_turns"] and differs >= checked * 0.8 and own_action_in_prompt > 0
    student_rows = [r for r in rows if r["actor"] == "student"]
    assert len(student_rows) == checked
    for r in student_rows:
        assert r["completion"][0]["content"] != r["student_response"]
        assert r["prompt"][-1]["role"] == "user" and r["prompt"][0]["role"] == "system"
    # teacher calls <= 1 per visited state: rollout and labeling together
    assert teacher.calls <= len(rows) and stats["teacher_calls"] == stats["teacher_turns"] - stats["cache_hits"]


def test_label_cache_hits_across_iterations_and_aggregate_dedups(tmp_path, runtime):
    instances = generate(4, "train", seed=9)
    by_id = {i.instance_id: i for i in instances}
    teacher = CachedTeacher(make_policy("oracle"), LabelCache(tmp_path / "cache"))
    first = _rollout(tmp_path, "it0", make_policy("oracle"), teacher, instances, runtime, iteration=0, beta=1.0)
    assert first["teacher_calls"] == first["turns"] and first["cache_hits"] == 0
    # iteration 1 with a fresh cache object over the same directory: the first state of every instance is known
    teacher1 = CachedTeacher(make_policy("oracle"), LabelCache(tmp_path / "cache"))
    second = _rollout(tmp_path, "it1", WrongActionPolicy(2), teacher1, instances, runtime, iteration=1, beta=0.5)
    from daggerlm.dagger.rollout import read_trajectories

    labeled, rows = relabel(read_trajectories(tmp_path / "it1" / "trajectories.jsonl"), by_id, teacher1)
    assert teacher1.hits >= len(instances)  # every first state was labeled in iteration 0
    assert teacher1.calls <= len(rows)
    # aggregation: iteration 0 ∪ iteration 1, de-duplicated by state hash
    _, rows0 = relabel(read_trajectories(tmp_path / "it0" / "trajectories.jsonl"), by_id, teacher1)
    write_parquet(tmp_path / "l0.parquet", pd.DataFrame(rows0))
    write_parquet(tmp_path / "l1.parquet", pd.DataFrame(rows))
    s0 = aggregate(None, tmp_path / "l0.parquet", tmp_path / "a0.parquet")
    s1 = aggregate(tmp_path / "a0.parquet", tmp_path / "l1.parquet", tmp_path / "a1.parquet")
    merged = read_parquet(tmp_path / "a1.parquet")
    assert s0["examples"] == len(rows0) and merged["state_hash"].is_unique
    assert s1["examples"] == len(set(r["state_hash"] for r in rows0 + rows))
    assert s1["duplicates_dropped"] >= len(instances) and s1["new_examples"] == s1["examples"] - s0["examples"]
    assert s1["per_iteration"]["0"] == s0["examples"] and set(s1["per_actor"]) == {"student", "teacher"}


def test_same_seed_same_rollouts(tmp_path, runtime, tiny_model_dir):
    instances = generate(4, "train", seed=10)

    def run(name):
        student = make_policy("hf", model=str(tiny_model_dir), sampling=Sampling(max_new_tokens=24))
        teacher = CachedTeacher(make_policy("oracle"), LabelCache(tmp_path / f"cache-{name}"))
        _rollout(tmp_path, name, student, teacher, instances, runtime, beta=0.5)
        from daggerlm.dagger.rollout import read_trajectories

        trajs, _ = relabel(read_trajectories(tmp_path / name / "trajectories.jsonl"),
                           {i.instance_id: i for i in instances}, teacher)
        return [[(t.actor, t.response, t.action, t.label) for t in tr.turns] for tr in trajs]

    first, second = run("a"), run("b")
    assert first == second
    assert {actor for traj in first for actor, *_ in traj} == {"student", "teacher"}


class _Unavailable:
    """A teacher whose server is down until `up` is set (every request fails, as after the SDK's retries)."""

    identity = Oracle().identity

    def __init__(self):
        self.up, self.oracle = False, Oracle()

    def complete(self, requests):
        if self.up:
            return self.oracle.complete(requests)
        return [Completion("", {"policy": self.identity, "error": "InternalServerError: 500"}) for _ in requests]


def test_failed_labels_are_asked_again_when_the_stage_reruns(tmp_path, runtime):
    from daggerlm.agent.runner import LocalRunner
    from daggerlm.dagger.rollout import read_trajectories

    instances = generate(3, "train", seed=8)
    by_id = {i.instance_id: i for i in instances}
    _rollout(tmp_path, "r", WrongActionPolicy(1), CachedTeacher(Oracle(), LabelCache(tmp_path / "c0")), instances,
             runtime, beta=0.0)
    trajectories = read_trajectories(tmp_path / "r" / "trajectories.jsonl")
    server = _Unavailable()
    teacher = CachedTeacher(server, LabelCache(tmp_path / "cache"))
    runner = LocalRunner(tmp_path / "items")  # the stage's per-item results, as a re-run finds them
    with pytest.raises(InfrastructureError, match="label: 3 of 3 items failed outside the agent"):
        relabel(trajectories, by_id, teacher, runner=runner)
    assert not list((tmp_path / "items").glob("*.json")) and not (tmp_path / "cache").exists()  # nothing kept
    server.up = True
    labeled, rows = relabel(trajectories, by_id, teacher, runner=runner)
    states = sum(len(t.turns) for t in trajectories)
    assert len(rows) == states and all(t.label for tr in labeled for t in tr.turns)

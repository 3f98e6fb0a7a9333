"""The student's behaviour log-probs, from the rollout through the label rows to the tokens training sees."""

import math

import pandas as pd
import torch

from daggerlm.config import AgentConfig, Sampling
from daggerlm.dagger.aggregate import aggregate, write_parquet
from daggerlm.dagger.label_cache import CachedTeacher, LabelCache
from daggerlm.dagger.relabel import relabel
from daggerlm.dagger.rollout import collect_rollouts, read_trajectories
from daggerlm.instances.synthetic import generate
from daggerlm.policies import make_policy
from daggerlm.training.behaviour import aligned, behaviour_logps


def test_unknown_where_the_rendered_completion_is_not_what_was_generated():
    assert aligned([5, 6, 7], [5, 6], [-1.0, -2.0])[:2] == [-1.0, -2.0]
    assert math.isnan(aligned([5, 6, 7], [5, 6], [-1.0, -2.0])[2])  # the end-of-turn a cut generation never made
    assert [math.isnan(v) for v in aligned([5, 6, 7], [5, 9], [-1.0, -2.0])] == [False, True, True]  # re-tokenized
    assert all(math.isnan(v) for v in aligned([5, 6, 7], None, None))  # a policy that gives none


def test_training_finds_the_rollout_students_own_log_prob_of_each_token_it_trains_on(tmp_path, runtime,
                                                                                     tiny_model_dir):
    """Before any update the student training starts from is the one that sampled: every known behaviour
    log-prob must equal its log-prob of that very training token (an importance ratio of 1)."""
    instances = generate(3, "train", seed=8)
    student = make_policy("hf", model=str(tiny_model_dir), sampling=Sampling(temperature=1.0, max_new_tokens=24))
    teacher = CachedTeacher(make_policy("oracle"), LabelCache(tmp_path / "cache"))
    collect_rollouts(instances, student, teacher, tmp_path / "r", iteration=0, beta=0.3, seed=3, runtime=runtime,
                     agent=AgentConfig(step_limit=4, max_consecutive_format_errors=4), concurrency=3)
    trajectories = read_trajectories(tmp_path / "r" / "trajectories.jsonl")
    student_turns = [t for traj in trajectories for t in traj.turns if t.actor == "student"]
    assert student_turns and all(len(t.token_ids) == len(t.token_logp) > 0 for t in student_turns)
    _, rows = relabel(trajectories, {i.instance_id: i for i in instances}, teacher)
    write_parquet(tmp_path / "labels.parquet", pd.DataFrame(rows))
    aggregate(None, tmp_path / "labels.parquet", tmp_path / "train.parquet")

    behaviour = behaviour_logps(pd.read_parquet(tmp_path / "train.parquet"), student.tokenizer)
    assert len(behaviour) >= len(student_turns) // 2  # states the aggregate de-duplicated have one row
    known_tokens = 0
    for ids, logp in behaviour.items():
        logp = torch.tensor(logp)
        completion = torch.tensor(ids[len(ids) - len(logp):])
        with torch.no_grad():
            logits = student.model(input_ids=torch.tensor([ids])).logits[0, len(ids) - len(logp) - 1:-1]
        own = torch.log_softmax(logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        known = ~logp.isnan()
        torch.testing.assert_close(logp[known], own[known], atol=1e-4, rtol=0)
        known_tokens += int(known.sum())
    # the untrained student emits bytes cut mid-character, which re-tokenize differently: from there on
    # unknown (a student that writes text round-trips; the bench's trained students record it per checkpoint)
    assert known_tokens >= 10

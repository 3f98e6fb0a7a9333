"""The entropy-gated length curriculum: the gate, and the budgets it sets through the whole loop."""

from __future__ import annotations

import json

import pytest

from daggerlm.config.training import CurriculumConfig
from daggerlm.dagger.curriculum import OFF, record, rollout_budget
from daggerlm.dagger.rollout import read_trajectories
from daggerlm.errors import InputError
from tests.conftest import tiny_params
from tests.dagger.test_loop import run_recording_reads, undeclared
from daggerlm.dagger import pipeline


def test_the_budget_grows_only_below_the_entropy_threshold_and_stops_at_the_cap(tmp_path):
    c = CurriculumConfig(kind="entropy", start_tokens=48, growth=2.0, entropy_below=1.5)
    previous = tmp_path / "curriculum.json"
    assert rollout_budget(c, 256, 0, previous) == 48 and rollout_budget(c, 32, 0, previous) == 32
    budgets = [48]
    for entropy in (2.0, 1.4, 1.49, 1.6, 0.1, 0.1):  # checkpoint k+1's entropy, measured by evaluate k
        previous.write_text(json.dumps(record(c, 256, budgets[-1], entropy)))
        budgets.append(rollout_budget(c, 256, len(budgets), previous))
    assert budgets == [48, 48, 96, 192, 192, 256, 256]
    assert rollout_budget(CurriculumConfig(), 256, 3, previous) is None  # off: the sampling's own max_new_tokens


def test_a_budget_without_its_record_is_one_line(tmp_path):
    c = CurriculumConfig(kind="entropy")
    with pytest.raises(InputError, match=r"curriculum.json: no entropy-gated budget in it .* run evaluate 1"):
        rollout_budget(c, 256, 2, tmp_path / "curriculum.json")
    (tmp_path / "curriculum.json").write_text(json.dumps(OFF))
    with pytest.raises(InputError, match="written with the curriculum off"):
        rollout_budget(c, 256, 2, tmp_path / "curriculum.json")


def test_the_loop_rolls_out_under_the_budget_the_trained_students_entropy_sets(tmp_path, monkeypatch):
    curriculum = {"kind": "entropy", "start_tokens": 6, "growth": 2.0, "entropy_below": 50.0}
    p = tiny_params(tmp_path, **{"train.objective.curriculum": curriculum,
                                 "dagger.beta": {"kind": "constant", "value": 0.5}})
    rows, reads = run_recording_reads(p, monkeypatch)
    for name, seen in reads.items():
        assert not undeclared(pipeline.BY_NAME[name], seen), f"{name} reads {undeclared(pipeline.BY_NAME[name], seen)}"
    assert [r["generation_budget"] for r in rows] == [6, 12]
    assert all(0 < r["student_entropy"] < 50 for r in rows)  # nats per token: at most log(vocabulary)
    for k, budget in enumerate((6, 12)):
        trajectories = read_trajectories(tmp_path / "data" / "rollouts" / f"iter_{k}" / "trajectories.jsonl")
        tokens = [t.meta["completion_tokens"] for traj in trajectories for t in traj.turns if t.actor == "student"]
        assert tokens and max(tokens) <= budget
    final = json.loads((tmp_path / "data" / "eval" / "iter_1" / "curriculum.json").read_text())
    assert final["budget"] == 12 and final["next_budget"] == 24

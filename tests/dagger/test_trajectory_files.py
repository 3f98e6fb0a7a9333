"""Two rollouts of the same params write the same trajectories.jsonl, byte for byte: the wall-clock
seconds of episodes and turns go to timings.jsonl beside it (out of DVC's hashes), and reading the
trajectories joins them back."""

from daggerlm.dagger.rollout import read_trajectories
from daggerlm.dagger.stages import stage_instances, stage_rollout
from tests.conftest import tiny_params


def test_two_rollouts_agree_but_for_their_seconds(tmp_path, tiny_model_dir):
    runs = []
    for run in ("a", "b"):
        p = tiny_params(tmp_path / run, **{"student.model": str(tiny_model_dir), "dagger.concurrency": 2,
                                           "dagger.beta": {"kind": "constant", "value": 0.5}})
        stage_instances(p)
        stage_rollout(p, 0)
        runs.append(tmp_path / run / "data" / "rollouts" / "iter_0")
    first, second = (d / "trajectories.jsonl" for d in runs)
    assert first.read_bytes() == second.read_bytes()
    assert "wall_s" not in first.read_text() and "policy_s" not in first.read_text()
    assert (runs[0] / "timings.jsonl").read_bytes() != (runs[1] / "timings.jsonl").read_bytes()
    trajectories = read_trajectories(first)
    assert all(t.wall_s > 0 for t in trajectories) and any(turn.env_s > 0 for t in trajectories for turn in t.turns)
    assert {t.actor for traj in trajectories for t in traj.turns} == {"teacher", "student"}
    (runs[0] / "timings.jsonl").unlink()  # pulled from a DVC remote: no seconds, the same trajectories
    assert [t.turns for t in read_trajectories(first)] != [] and read_trajectories(first)[0].wall_s == 0

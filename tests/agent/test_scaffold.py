from daggerlm.actions import extract_action, render_response
from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.policies import make_policy
from tests.helpers import ScriptedPolicy


def _run(inst, responses, runtime, **agent):
    return run_episode(inst, {"student": ScriptedPolicy(responses)}, lambda t: "student", runtime=runtime,
                       agent=AgentConfig(**agent))


def test_format_error_gets_feedback_and_stays_in_history(eval_instances, runtime):
    inst = eval_instances[0]
    traj = _run(inst, ["no fence here", render_response("look", "ls"),
                       render_response("done", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")], runtime)
    assert traj.exit_status == "Submitted" and traj.n_format_errors == 1
    roles = [m["role"] for m in traj.messages]
    assert roles[:4] == ["system", "user", "assistant", "user"]
    assert traj.messages[2]["content"] == "no fence here"
    assert "Format error" in traj.messages[3]["content"]
    assert traj.turns[0].action is None and traj.turns[1].action == "ls"
    assert traj.turns[1].prefix_len == 4  # the state includes the bad response and the feedback


def test_repeated_format_errors_end_the_episode(eval_instances, runtime):
    traj = _run(eval_instances[0], ["a", "b", "c"], runtime, max_consecutive_format_errors=3)
    assert traj.exit_status == "RepeatedFormatError" and traj.n_format_errors == 3


def test_step_limit(eval_instances, runtime):
    traj = _run(eval_instances[0], [render_response("x", "ls")] * 3, runtime, step_limit=3)
    assert traj.exit_status == "LimitsExceeded" and traj.n_turns == 3


def test_long_output_is_truncated_in_the_observation(eval_instances, runtime):
    traj = _run(eval_instances[0], [render_response("x", "seq 1 100000"),
                                    render_response("done", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")],
                runtime, observation_chars=500)
    obs = traj.messages[3]["content"]
    assert "characters elided" in obs and len(obs) < 800
    assert obs.split("<output>\n")[1].startswith("1\n2\n3\n")


def test_submission_is_the_worktree_diff(eval_instances, runtime):
    inst = eval_instances[0]
    traj = _run(inst, [render_response("x", "echo hi > added.txt"),
                       render_response("done", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")], runtime)
    assert traj.exit_status == "Submitted"
    assert "diff --git a/added.txt b/added.txt" in traj.patch and "+hi" in traj.patch


def test_trajectory_records_state_snapshot_and_observation(eval_instances, runtime):
    inst = eval_instances[1]
    traj = run_episode(inst, {"teacher": make_policy("oracle")}, lambda t: "teacher", runtime=runtime,
                       agent=AgentConfig())
    fix_turn = next(t for t in traj.turns if t.action.startswith("sed -i"))
    after = traj.turns[fix_turn.index + 1]
    assert fix_turn.snapshot["diff"] == "" and after.snapshot["diff"].strip() == inst.patch.strip()
    assert all(t.label == t.response and t.actor == "teacher" for t in traj.turns)
    assert traj.turns[0].returncode == 1 and "FAILED" in traj.turns[0].observation
    assert [traj.messages[t.prefix_len]["content"] for t in traj.turns] == [t.response for t in traj.turns]


def test_extract_action():
    assert extract_action(render_response("t", "ls -la")) == "ls -la"
    assert extract_action("```bash\nls\n```\n```bash\npwd\n```") is None
    assert extract_action("plain text") is None


def test_a_command_that_times_out_does_not_end_the_episode(eval_instances, tmp_path):
    from daggerlm.config import RuntimeConfig

    traj = _run(eval_instances[0], [render_response("wait", "sleep 1000"), render_response("next", "echo alive"),
                                    render_response("done", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")],
                RuntimeConfig(timeout_s=1, workdir=str(tmp_path)))
    assert traj.exit_status == "Submitted" and traj.n_turns == 3
    assert traj.turns[0].timed_out and traj.turns[0].returncode == -1 and "timed out" in traj.turns[0].observation
    assert "alive" in traj.turns[1].observation

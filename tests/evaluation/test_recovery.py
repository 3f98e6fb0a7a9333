"""Setbacks and recovery on real episodes: a wrong edit that fails the tests, then the oracle takes over."""

from daggerlm.actions import render_response
from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.evaluation import grade
from daggerlm.evaluation.recovery import had_setback, recovery_stats, states_after_setback
from daggerlm.policies.oracle import Oracle, gold_fix
from tests.helpers import ScriptedPolicy


def _wrong_then_oracle(inst, runtime, wrong_turns):
    fix = gold_fix(inst.patch)
    wrong = [render_response("Guess.", f"sed -i '{fix.line}c\\    return 0' {fix.file}"),
             render_response("Test it.", Oracle.test_command(inst))]
    traj = run_episode(inst, {"student": ScriptedPolicy(wrong[:wrong_turns]), "teacher": Oracle()},
                       lambda t: "student" if t < wrong_turns else "teacher", runtime=runtime,
                       agent=AgentConfig(step_limit=12))
    return traj, grade(inst, traj.patch, runtime)["resolved"]


def test_a_failed_test_run_after_an_edit_is_a_setback_and_resolving_later_a_recovery(eval_instances, runtime):
    inst = eval_instances[0]
    recovered = _wrong_then_oracle(inst, runtime, 2)  # wrong edit, failing tests, then the oracle undoes and fixes
    edited_only = _wrong_then_oracle(inst, runtime, 1)  # wrong edit; the oracle undoes it, its test run fails
    clean = _wrong_then_oracle(inst, runtime, 0)  # the oracle's own first test run fails on an unmodified tree
    assert had_setback(recovered[0]) and recovered[1]
    assert had_setback(edited_only[0]) and edited_only[1]  # a fix was tried before the failing run
    assert not had_setback(clean[0]) and clean[1]
    # the oracle's states after the failing test run (turn 1) are the ones that teach recovery
    after = states_after_setback([recovered[0], clean[0]])
    assert after == {(inst.instance_id, t.index) for t in recovered[0].turns[2:]} and len(after) >= 2
    stuck = recovered[0].model_copy(update={"turns": recovered[0].turns[:2]})
    stats = recovery_stats([recovered, edited_only, clean, (stuck, False)])
    assert stats == {"setbacks": 3, "recovered": 2, "recovery_rate": 2 / 3}
    assert recovery_stats([clean])["recovery_rate"] is None


def test_an_edit_that_missed_its_file_then_failing_tests_is_a_setback(eval_instances, runtime):
    inst = eval_instances[1]
    fix = gold_fix(inst.patch)
    missed = [render_response("Fix.", f"sed -i '{fix.line}c\\    return 0' ./nowhere/{fix.file}"),
              render_response("Test it.", Oracle.test_command(inst))]
    traj = run_episode(inst, {"student": ScriptedPolicy(missed)}, lambda t: "student", runtime=runtime,
                       agent=AgentConfig(step_limit=2))
    assert traj.turns[0].returncode != 0 and not traj.turns[1].snapshot.get("diff")
    assert had_setback(traj)

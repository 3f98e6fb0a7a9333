"""Agreement with the teacher by kind of state, on real episodes."""

from daggerlm.actions import render_response
from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.evaluation.agreement import actions_by_state, agreement_by_state
from daggerlm.policies.oracle import Oracle, gold_fix
from tests.helpers import ScriptedPolicy


def test_a_student_that_retries_instead_of_undoing_disagrees_after_the_failing_run(eval_instances, runtime):
    inst = eval_instances[0]
    fix = gold_fix(inst.patch)
    wrong = render_response("Guess.", f"sed -i '{fix.line}c\\    return 0' ./{fix.file}")
    script = [wrong, render_response("Test it.", Oracle.test_command(inst)), wrong]
    student = run_episode(inst, {"student": ScriptedPolicy(script)}, lambda t: "student", runtime=runtime,
                          agent=AgentConfig(step_limit=3))
    teacher = run_episode(inst, {"teacher": Oracle()}, lambda t: "teacher", runtime=runtime, agent=AgentConfig())
    by_state = agreement_by_state([student], {inst.instance_id: inst}, Oracle().decide)
    assert by_state == {"start, at base": {"agree": 0, "total": 1},  # the oracle runs the tests first
                        "edit, another change": {"agree": 1, "total": 1},  # both test the change
                        "tests failed, another change": {"agree": 0, "total": 1}}  # the oracle undoes
    assert actions_by_state([student], {inst.instance_id: inst}) == {
        "start, at base": {"edit": 1}, "edit, another change": {"tests": 1},
        "tests failed, another change": {"edit": 1}}  # where the oracle would undo, the student edits again
    own = agreement_by_state([teacher], {inst.instance_id: inst}, Oracle().decide)
    assert sum(v["total"] for v in own.values()) == teacher.n_turns >= 5
    assert all(v["agree"] == v["total"] for v in own.values())  # a pure function agrees with itself
    assert "tests failed, at base" in own and "tests passed, the fix" in own
    teacher_actions = actions_by_state([teacher], {inst.instance_id: inst})
    assert teacher_actions["tests passed, the fix"] == {"submit": 1}
    assert teacher_actions["start, at base"] == {"tests": 1}

"""The oracle solves clean instances in 4-10 turns and recovers from states a bad student made."""

import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from daggerlm.actions import SUBMIT_MARKER, render_response
from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig, RuntimeConfig
from daggerlm.evaluation import grade
from daggerlm.instances.synthetic import generate
from daggerlm.policies import make_policy
from daggerlm.policies.oracle import Oracle, changed_paths, gold_fix
from tests.conftest import REPO
from tests.helpers import ScriptedPolicy, WrongActionPolicy


def test_cli_oracle_on_50_unseen_eval_instances(tmp_path):
    seed = random.SystemRandom().randrange(10**6, 10**9)  # a seed no one has run before
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "oracle", "--seed", str(seed), "--out", str(tmp_path),
                        "--params", str(REPO / "params.yaml"), "--set", f"runtime.workdir={tmp_path}"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_instances"] == 50, seed
    assert metrics["resolve_rate"] == 1.0, f"seed {seed}: {metrics}"
    assert 4 <= metrics["min_turns"] and metrics["max_turns"] <= 10, f"seed {seed}: {metrics}"
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 50 and set(predictions[0]) == {"instance_id", "model_name_or_path", "model_patch"}


def _recover(args):
    inst, state_seed, runtime, oracle = args
    rng = random.Random(state_seed)
    n_wrong = rng.randint(1, 3)
    wrong_turns = set(rng.sample(range(n_wrong + 3), n_wrong))  # mistakes interleaved with expert turns
    schedule = lambda t: "student" if t in wrong_turns else "teacher"  # noqa: E731
    policies = {"teacher": make_policy("oracle", **oracle), "student": WrongActionPolicy(state_seed)}
    traj = run_episode(inst, policies, schedule, runtime=runtime, agent=AgentConfig(step_limit=20))
    return traj, grade(inst, traj.patch, runtime)


@pytest.mark.parametrize("oracle,n", [({}, 60), ({"undo": "all", "reshow": True, "retest": True}, 40)],
                         ids=["paths", "all-reshow-retest"])
def test_oracle_recovers_from_perturbed_states(oracle, n, tmp_path):
    runtime = RuntimeConfig(workdir=str(tmp_path))
    instances = generate(50, "train", seed=2024)
    jobs = [(instances[i % 50], i, runtime, oracle) for i in range(n)]
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(_recover, jobs))
    perturbed = [t for t, _ in outcomes if any(turn.actor == "student" for turn in t.turns)]
    assert len(perturbed) == n
    damaged = sum(any(turn.actor == "student" and turn.snapshot != t.turns[turn.index + 1].snapshot
                      for turn in t.turns[:-1]) for t in perturbed)
    assert damaged >= 0.6 * n, "the perturbations should usually change the worktree"
    resolved = sum(report["resolved"] for _, report in outcomes)
    print(f"oracle {oracle} recovery: {resolved}/{n} resolved, {damaged} states with a damaged worktree")
    failures = [(t.instance_id, [x.action for x in t.turns]) for (t, rep) in outcomes if not rep["resolved"]]
    assert n - resolved <= 1, failures[:3]  # seeded states: the same n episodes every run


def _after_wrong_edit(inst, wrong: str, tmp_path, **oracle):
    """An episode whose first action is the student's `wrong` command, then the oracle's (`oracle`: its options)."""
    runtime = RuntimeConfig(workdir=str(tmp_path))
    policies = {"student": ScriptedPolicy([render_response("Fix.", wrong)]),
                "teacher": make_policy("oracle", **oracle)}
    traj = run_episode(inst, policies, lambda t: "student" if t == 0 else "teacher", runtime=runtime,
                       agent=AgentConfig(step_limit=10))
    return [t.action for t in traj.turns], traj, grade(inst, traj.patch, runtime)["resolved"]


def test_oracle_undoes_a_wrong_change_after_the_tests_show_it(eval_instances, tmp_path):
    inst = eval_instances[0]
    fix = gold_fix(inst.patch)
    wrong = f"sed -i '{fix.line}c\\{fix.new} + 1' ./{fix.file} && echo '# note' >> ./{fix.file}"
    actions, traj, resolved = _after_wrong_edit(inst, wrong, tmp_path)
    # right after the edit the student cannot know it is wrong: the oracle tests first, as it could
    assert actions[1] == Oracle.test_command(inst) and traj.turns[1].returncode != 0
    assert changed_paths(traj.turns[2].snapshot["diff"]) == ([fix.file], [])
    assert actions[2] == f"git checkout -- ./{fix.file}"  # the path as grep prints it
    assert resolved


def test_oracle_undo_all_resets_the_worktree_with_one_constant_command(eval_instances, tmp_path):
    """Two instances, different files changed and a new file added: the same undo for both, after
    which the worktree is at base (the new file gone) and the oracle goes on to resolve."""
    undos = []
    for inst in eval_instances[:2]:
        fix = gold_fix(inst.patch)
        wrong = f"sed -i '{fix.line}c\\{fix.new} + 1' ./{fix.file} && echo 'x = 1' > ./scratch.py"
        actions, traj, resolved = _after_wrong_edit(inst, wrong, tmp_path, undo="all")
        assert changed_paths(traj.turns[2].snapshot["diff"]) == ([fix.file], ["scratch.py"])
        assert traj.turns[3].snapshot["diff"] == ""
        assert resolved
        undos.append(actions[2])
    assert undos == ["git reset -q --hard && git clean -fdq"] * 2


@pytest.mark.parametrize("reshow,retest", [(False, False), (True, False), (True, True)])
def test_oracle_reshow_looks_at_the_code_again_after_an_undo(reshow, retest, eval_instances, tmp_path):
    """The code was shown before the wrong edit: without reshow the oracle fixes right after the
    undo (copying from turns back), with reshow it shows the code again first, with retest as well
    it runs the tests before that, as at the start of an episode."""
    inst = eval_instances[0]
    fix = gold_fix(inst.patch)
    wrong = render_response("Fix.", f"sed -i '{fix.line}c\\{fix.new} + 1' ./{fix.file} && echo '# x' >> ./{fix.file}")
    policies = {"student": ScriptedPolicy([wrong]), "teacher": make_policy("oracle", undo="all", reshow=reshow,
                                                                            retest=retest)}
    traj = run_episode(inst, policies, lambda t: "student" if t == 2 else "teacher",
                       runtime=RuntimeConfig(workdir=str(tmp_path)), agent=AgentConfig(step_limit=12))
    actions = [t.action for t in traj.turns]
    locate, fix_command = Oracle.locate_command(fix), Oracle.fix_command(inst, fix)
    assert actions[:2] == [Oracle.test_command(inst), locate] and actions[4] == "git reset -q --hard && git clean -fdq"
    test = Oracle.test_command(inst)
    assert actions[5:8] == ([test, locate, fix_command] if retest else [locate, fix_command, test] if reshow
                            else [fix_command, test, f"echo {SUBMIT_MARKER}"])
    assert grade(inst, traj.patch, RuntimeConfig(workdir=str(tmp_path)))["resolved"]


def test_oracle_undo_must_be_known():
    with pytest.raises(ValueError, match="oracle undo: expected one of paths, all, got 'some'"):
        Oracle("some")


def test_oracle_rewrites_a_wrong_fix_line_in_one_step(eval_instances, tmp_path):
    """A wrong rewrite of the fix's line alone is one command from the fix: the oracle's action there
    is the fix itself (not undo, then fix), and applying it to that worktree gives exactly the gold patch."""
    inst = eval_instances[0]
    fix = gold_fix(inst.patch)
    wrong = f"sed -i '{fix.line}c\\{fix.new} + 1' ./{fix.file}"
    actions, traj, resolved = _after_wrong_edit(inst, wrong, tmp_path)
    assert actions[:4] == [wrong, Oracle.test_command(inst), Oracle.fix_command(inst, fix), Oracle.test_command(inst)]
    assert traj.turns[1].returncode != 0 and traj.turns[3].returncode == 0
    assert resolved


def test_with_reshow_the_oracle_undoes_a_wrong_fix_line_and_shows_the_code_again(eval_instances, tmp_path):
    """With reshow every fix copies from the code just shown, never from a grep output before the
    failing run, so the one-step rewrite gives way to undo, show, fix."""
    inst = eval_instances[0]
    fix = gold_fix(inst.patch)
    wrong = f"sed -i '{fix.line}c\\{fix.new} + 1' ./{fix.file}"
    actions, _, resolved = _after_wrong_edit(inst, wrong, tmp_path, undo="all", reshow=True)
    assert actions[:5] == [wrong, Oracle.test_command(inst), "git reset -q --hard && git clean -fdq",
                           Oracle.locate_command(fix), Oracle.fix_command(inst, fix)]
    assert resolved


def test_oracle_is_a_function_of_the_state(eval_instances):
    inst = eval_instances[2]
    oracle = Oracle()
    clean = {"head": inst.base_commit, "diff": ""}
    assert "pytest" in oracle.decide(inst, [], clean)
    assert oracle.decide(inst, [], clean) == oracle.decide(inst, [], dict(clean))
    fixed = {"head": inst.base_commit, "diff": inst.patch}
    assert "pytest" in oracle.decide(inst, [], fixed)


def test_multi_line_fix_keeps_a_trailing_blank_context_line(eval_instances):
    patch = ("diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,4 @@\n def f(a):\n"
             "-    pass\n+    x = a\n+    return x\n \n")  # the last context line is blank: a single space
    inst = eval_instances[0].model_copy(update={"patch": patch})
    command = Oracle.fix_command(inst, gold_fix(patch))
    assert command.startswith("git apply") and command.endswith("+    return x\n \nDAGGERLM_PATCH")

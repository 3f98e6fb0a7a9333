"""bench/science_retries.py: does a retry of the fix, from a clean worktree, repeat the attempt that failed?"""

import importlib.util
import sys

from daggerlm.actions import render_response
from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.evaluation import grade
from daggerlm.io import ResultStore
from daggerlm.policies.oracle import Oracle, gold_fix
from tests.conftest import REPO
from tests.helpers import ScriptedPolicy

spec = importlib.util.spec_from_file_location("science_retries", REPO / "bench" / "science_retries.py")
retries = sys.modules["science_retries"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(retries)


def test_counts_retries_that_repeat_the_failed_fix_and_those_that_are_the_fix(eval_instances, runtime, tmp_path):
    inst = eval_instances[0]
    fix = Oracle.fix_command(inst, gold_fix(inst.patch))
    wrong = f"sed -i '{gold_fix(inst.patch).line}c\\    return 0' ./{gold_fix(inst.patch).file}"
    undo = "git reset -q --hard && git clean -fdq"
    run = tmp_path / "seed_0" / "dagger-exp"
    (run / "instances").mkdir(parents=True)
    (run / "instances" / "eval.jsonl").write_text(inst.model_dump_json() + "\n")
    store = ResultStore(run / "eval" / "iter_2" / "results")
    scripts = {"repeats": [wrong, undo, wrong, undo, wrong], "recovers": [wrong, undo, fix], "clean": [fix]}
    for name, actions in scripts.items():
        episode = run_episode(inst, {"student": ScriptedPolicy([render_response("Try.", a) for a in actions])},
                              lambda t: "student", runtime=runtime, agent=AgentConfig(step_limit=len(actions)))
        report = grade(inst, episode.patch, runtime)
        store.put(name, "k", {"trajectory": episode.model_dump(mode="json"), "report": report})
    counts = retries.retries(run, 2)
    assert counts == {"episodes": 3, "first_attempt_is_the_fix": 1, "episodes_with_a_retry": 2,
                      "resolved_with_a_retry": 1, "retries": 3, "retry_repeats_a_failed_attempt": 2,
                      "retry_is_the_fix": 1}

"""bench/science_undo_paths.py: does a student's undo after a failing test run name the files it changed?"""

import importlib.util
import sys

from daggerlm.actions import render_response
from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.io import ResultStore
from daggerlm.policies.oracle import Oracle, gold_fix
from tests.conftest import REPO
from tests.helpers import ScriptedPolicy

spec = importlib.util.spec_from_file_location("science_undo_paths", REPO / "bench" / "science_undo_paths.py")
undo = sys.modules["science_undo_paths"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(undo)


def test_counts_undos_by_whether_they_name_the_changed_file(eval_instances, runtime, tmp_path):
    inst = eval_instances[0]
    fix = gold_fix(inst.patch)
    edit = lambda line: render_response("Guess.", f"sed -i '{fix.line}c\\    {line}' ./{fix.file}")  # noqa: E731
    test = render_response("Test it.", Oracle.test_command(inst))
    run = tmp_path / "seed_0" / "dagger-exp"
    (run / "instances").mkdir(parents=True)
    (run / "instances" / "eval.jsonl").write_text(inst.model_dump_json() + "\n")
    store = ResultStore(run / "eval" / "iter_2" / "results")
    # a syntax error puts the file's path in pytest's output; a wrong value, here, only the test's
    for n, (line, target) in enumerate([("return (", fix.file), ("return 0", "elsewhere/other.py")]):
        script = [edit(line), test, render_response("Undo.", f"git checkout -- ./{target}")]
        episode = run_episode(inst, {"student": ScriptedPolicy(script)}, lambda t: "student", runtime=runtime,
                              agent=AgentConfig(step_limit=3))
        store.put(f"episode-{n}", "k", {"trajectory": episode.model_dump(mode="json")})
    counts = undo.undo_paths(run, 2)
    assert counts == {("undo", True, True): 1, ("undo", False, False): 1}

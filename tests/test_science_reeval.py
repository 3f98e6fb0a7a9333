"""bench/science_reeval.py: a science run's final students evaluated again, each through its trained view."""

import importlib.util
import json
import shutil
import sys

from daggerlm.instances.synthetic import generate
from daggerlm.io import atomic_write_json
from daggerlm.policies.checkpoints import CHECKPOINT_META
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("science_reeval", REPO / "bench" / "science_reeval.py")
reeval = sys.modules["science_reeval"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reeval)
spec = importlib.util.spec_from_file_location("science_retries", REPO / "bench" / "science_retries.py")
retries = sys.modules["science_retries"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(retries)


def test_reevaluates_the_final_student_as_it_was_trained_to_see(tiny_model_dir, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "seed_3" / "dagger-exp"
    (run / "instances").mkdir(parents=True)
    (run / "instances" / "eval.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in generate(2, "eval", 4)))
    model = run / "checkpoints" / "iter_3"
    shutil.copytree(tiny_model_dir, model)
    meta = model / CHECKPOINT_META
    atomic_write_json(meta, {**(json.loads(meta.read_text()) if meta.is_file() else {}), "keep_turns": 2})
    seen = []

    def recording_evaluate(instances, policy, out_dir, **kw):
        seen.append((policy.identity, kw["seed"]))
        return real_evaluate(instances, policy, out_dir, **kw)

    real_evaluate = reeval.evaluate
    monkeypatch.setattr(reeval, "evaluate", recording_evaluate)
    monkeypatch.setattr(reeval, "SANDBOXES", tmp_path / "sandboxes")
    out = tmp_path / "again" / "seed_3" / "dagger-exp"
    metrics = reeval.reevaluate(run, out, 2, {"student.sampling.temperature": 1.5, "agent.step_limit": 2,
                                              "student.sampling.max_new_tokens": 8})
    assert metrics["n_instances"] == 2
    assert len(seen) == 1 and seen[0][0].endswith("|t=1.5|top_p=0.9|max_new=8|keep_turns=2") and seen[0][1] == 3
    assert retries.retries(out, 2)["episodes"] == 2  # written in the run's layout

"""The shipped GPU recipe (infra/params.gpu.yaml: a hub student on vLLM with LoRA, a hosted teacher)
makes a consistent pipeline: dvc.yaml generated from it, init-model records the hub id without
downloading anything, and `dvc repro --dry` goes on to roll out with that student."""

import yaml

from tests.conftest import REPO
from tests.pipeline.project import _run, make_project


def test_gpu_recipe_reproduces_dry_with_a_hub_student(tmp_path):
    recipe = yaml.safe_load((REPO / "infra" / "params.gpu.yaml").read_text())
    overrides = {f"{section}.{key}": value for section, values in recipe.items() for key, value in values.items()}
    project, p, env = make_project(tmp_path, **overrides)
    assert p.student.model == "Qwen/Qwen3-8B" and p.train.mode == "lora" and p.student.server.lora
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert not stages["init-model"].get("deps")  # a hub id is not a file dep (the record keeps its revision)
    assert {"student", "teacher"} <= set(stages["rollout"]["do"]["params"][0]["params.resolved.yaml"])  # the server and the hosted teacher
    _run(["dvc", "repro", "instances", "init-model"], project, env)
    record = yaml.safe_load((project / "data" / "checkpoints" / "iter_0" / "daggerlm_checkpoint.json").read_text())
    assert record["base_model"] == "Qwen/Qwen3-8B" and record["local"] is False
    dry = _run(["dvc", "repro", "--dry", "rollout@0"], project, env)
    assert "Stage 'init-model' didn't change" in dry and "Running stage 'rollout@0'" in dry

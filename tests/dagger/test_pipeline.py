"""The stage table is the pipeline's one declaration: dvc.yaml is generated from it, and so is the order."""

import pytest
import yaml

from daggerlm.config import load_params
from daggerlm.dagger.pipeline import STAGES, dvc_name, dvc_yaml, order, run_stage, write_pipeline
from daggerlm.dagger.stages import resolved_params
from daggerlm.errors import InputError
from tests.conftest import REPO


def test_committed_dvc_yaml_is_the_generated_one():
    """Regenerate with `daggerlm pipeline write` after changing the stage table or params.yaml."""
    p = load_params(REPO / "params.yaml")
    assert (REPO / "dvc.yaml").read_text() == dvc_yaml(p)
    assert (REPO / "params.resolved.yaml").read_text() == resolved_params(p)


def test_paths_follow_the_data_param_and_params_follow_the_declared_reads():
    p = load_params(REPO / "params.yaml", {"data": "elsewhere", "dagger.iterations": 3})
    stages = yaml.safe_load(dvc_yaml(p))["stages"]
    text = yaml.safe_dump(stages)
    assert "data/" not in text.replace("elsewhere/", "")
    assert stages["evaluate"]["do"]["params"] == [{"params.resolved.yaml":
                                                   list(next(s for s in STAGES if s.name == "evaluate").reads)}]
    assert stages["evaluate"]["do"]["cmd"].endswith("--params params.resolved.yaml --prefect")
    assert stages["params"] == {"cmd": "daggerlm stage params", "deps": ["params.yaml"],
                                "outs": [{"params.resolved.yaml": {"cache": False}}]}
    assert stages["train"]["foreach"]["2"] == {"deps0": "elsewhere/aggregated/iter_2", "deps1": "elsewhere/checkpoints/iter_2",
                                               "deps2": "elsewhere/checkpoints/iter_0",
                                               "outs0": "elsewhere/checkpoints/iter_3"}


def test_order_is_the_table_per_iteration():
    names = [dvc_name(s, k) for s, k in order(0, 2)]
    assert names == ["params", "instances", "init-model", "evaluate-base", "rollout@0", "label@0", "aggregate@0", "train@0", "evaluate@0",
                     "rollout@1", "label@1", "aggregate@1", "train@1", "evaluate@1", "report"]


@pytest.mark.parametrize("name, k, message", [
    ("rolout", 0, "stage 'rolout': expected one of params, instances, init-model, evaluate-base"),
    ("rollout", None, "stage rollout: give the iteration"),
    ("report", 1, "stage report: takes no iteration"),
    ("train", 2, r"stage train: iteration 2 is not in 0\.\.1"),
])
def test_run_stage_rejects_unknown_stages_and_iterations(name, k, message):
    with pytest.raises(InputError, match=message):
        run_stage(load_params(REPO / "params.yaml"), name, k)


def _dvc_reads(dvc: dict) -> dict[str, list[str]]:
    """{params file DVC reads: the keys every stage of dvc.yaml declares from it} (DVC's default file: params.yaml)."""
    reads: dict[str, list[str]] = {}
    for entry in dvc["stages"].values():
        for item in entry.get("do", entry).get("params", []):
            for file, keys in (item.items() if isinstance(item, dict) else [("params.yaml", [item])]):
                reads.setdefault(file, []).extend(keys)
    return reads


def _has(data: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


@pytest.mark.parametrize("project", ["shipped", "seed-only"])
def test_every_declared_param_exists_where_dvc_reads_it(project, tmp_path):
    """DVC fails a stage whose declared param is not a key of the file it reads: a params.yaml a user
    writes holds only what they changed, so the stages read the resolved params, which `pipeline write`
    writes beside dvc.yaml (the repository commits both): present on a clean checkout, before any stage."""
    if project == "seed-only":
        (tmp_path / "params.yaml").write_text("seed: 1\n")
        write_pipeline(load_params(tmp_path / "params.yaml"), tmp_path / "dvc.yaml")
    root = REPO if project == "shipped" else tmp_path
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    for file, keys in _dvc_reads(dvc).items():
        data = yaml.safe_load((root / file).read_text())
        missing = sorted({key for key in keys if not _has(data, key)})
        assert not missing, f"{file}: {missing}"

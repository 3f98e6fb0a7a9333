"""The stage table is the pipeline's one declaration: dvc.yaml is generated from it, and so is the order."""

import pytest
import yaml

from daggerlm.config import load_params
from daggerlm.dagger.pipeline import STAGES, dvc_name, dvc_yaml, order, run_stage
from daggerlm.errors import InputError
from tests.conftest import REPO


def test_committed_dvc_yaml_is_the_generated_one():
    """Regenerate with `daggerlm pipeline write` after changing the stage table or params.yaml."""
    assert (REPO / "dvc.yaml").read_text() == dvc_yaml(load_params(REPO / "params.yaml"))


def test_paths_follow_the_data_param_and_params_follow_the_declared_reads():
    p = load_params(REPO / "params.yaml", {"data": "elsewhere", "dagger.iterations": 3})
    stages = yaml.safe_load(dvc_yaml(p))["stages"]
    text = yaml.safe_dump(stages)
    assert "data/" not in text.replace("elsewhere/", "")
    assert stages["evaluate"]["do"]["params"] == list(next(s for s in STAGES if s.name == "evaluate").reads)
    assert "teacher" in stages["evaluate"]["do"]["params"] and "student" in stages["evaluate"]["do"]["params"]
    assert stages["train"]["foreach"]["2"] == {"deps0": "elsewhere/aggregated/iter_2", "deps1": "elsewhere/checkpoints/iter_2",
                                               "deps2": "elsewhere/checkpoints/iter_0",
                                               "outs0": "elsewhere/checkpoints/iter_3"}


def test_order_is_the_table_per_iteration():
    names = [dvc_name(s, k) for s, k in order(0, 2)]
    assert names == ["instances", "init-model", "rollout@0", "label@0", "aggregate@0", "train@0", "evaluate@0",
                     "rollout@1", "label@1", "aggregate@1", "train@1", "evaluate@1", "report"]


@pytest.mark.parametrize("name, k, message", [
    ("rolout", 0, "stage 'rolout': expected one of instances, init-model"),
    ("rollout", None, "stage rollout: give the iteration"),
    ("report", 1, "stage report: takes no iteration"),
    ("train", 2, r"stage train: iteration 2 is not in 0\.\.1"),
])
def test_run_stage_rejects_unknown_stages_and_iterations(name, k, message):
    with pytest.raises(InputError, match=message):
        run_stage(load_params(REPO / "params.yaml"), name, k)

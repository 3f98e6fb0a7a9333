"""A params.yaml as sparse as a user writes it (a seed and the sizes of a small run; everything else a
default) goes through `daggerlm pipeline write` and a real `dvc repro`, and dvc.lock records every
param each stage read, defaults included."""

import re

import yaml

from tests.pipeline.project import _run, make_project


def test_a_sparse_params_file_reproduces_and_the_lock_records_its_defaults(tmp_path):
    project, p, env = make_project(tmp_path, **{"seed": 1, "dagger.iterations": 1})
    written = (project / "params.yaml").read_text()
    assert "endpoint" not in written and "curriculum" not in written  # what broke train@0 on 12-01
    (project / "dvc.yaml").unlink()
    _run(["daggerlm", "pipeline", "write"], project, env)
    _run(["dvc", "repro"], project, env)
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], project, env)
    assert (project / "params.yaml").read_text() == written  # the user's file is theirs: never rewritten
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    train = lock["train@0"]["params"]["params.resolved.yaml"]
    assert train["teacher.endpoint.logprobs"] is False and train["seed"] == 1
    assert train["train"]["sft"]["num_train_epochs"] == p.train.sft["num_train_epochs"]
    assert lock["params"]["deps"][0]["path"] == "params.yaml"
    # an edit of the user's file reruns `params`, then exactly the stages that read the changed value
    data = yaml.safe_load(written)
    data["evaluation"] = {"concurrency": 1}
    (project / "params.yaml").write_text(yaml.safe_dump(data))
    ran = set(re.findall(r"Running stage '([^']+)'", _run(["dvc", "repro"], project, env)))
    assert {"params", "evaluate-base", "evaluate@0"} <= ran
    assert not ran & {"instances", "init-model", "rollout@0", "label@0", "aggregate@0", "train@0"}, ran

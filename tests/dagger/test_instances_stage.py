"""The instances stage: it writes both splits from their sources, reads only the params it declares,
and its DVC deps include the local files the sources name (derived from the stage table)."""

import yaml

from daggerlm.config import record_reads
from daggerlm.dagger import pipeline
from daggerlm.dagger.stages import stage_instances
from daggerlm.instances import load_instances, write_instances
from daggerlm.instances.synthetic import generate
from tests.conftest import tiny_params
from tests.dagger.test_loop import undeclared


def test_file_train_and_synthetic_eval_are_written_and_the_params_read_are_declared(tmp_path):
    mine = generate(3, "train", 21)
    write_instances(tmp_path / "mine.jsonl", mine)
    p = tiny_params(tmp_path, **{"instances.train": {"source": "file", "path": str(tmp_path / "mine.jsonl")}})
    with record_reads(p) as seen:
        counts = stage_instances(p)
    assert counts == {"train": 3, "eval": 2}
    assert [i.instance_id for i in load_instances(tmp_path / "data" / "instances" / "train.jsonl")] == \
        [i.instance_id for i in mine]
    assert "instances.train.path" in seen and not undeclared(pipeline.BY_NAME["instances"], seen)


def test_dvc_deps_of_the_instances_stage_follow_the_sources(tmp_path):
    def instances_entry(**overrides) -> dict:
        return yaml.safe_load(pipeline.dvc_yaml(tiny_params(tmp_path, **overrides)))["stages"]["instances"]

    assert "deps" not in instances_entry()  # synthetic: nothing outside the params
    entry = instances_entry(**{"instances.train": {"source": "file", "path": "records/train.parquet"},
                               "instances.eval": {"source": "mutation", "n": 4, "libraries_file": "libs.yaml"}})
    assert entry["deps"] == ["records/train.parquet", "libs.yaml"]
    assert entry["params"] == [{f"{tmp_path}/params.resolved.yaml": ["instances", "runtime"]}]
    assert entry["outs"] == [f"{tmp_path}/data/instances"]
    assert instances_entry(**{"instances.eval": {"source": "mutation", "n": 4}}).get("deps") is None  # shipped file

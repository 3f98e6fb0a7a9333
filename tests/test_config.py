"""params.yaml: validation errors name the key; edits keep the file's layout and change only what they must."""

import shutil
import subprocess
import sys

import pytest
import yaml

from daggerlm.config import load_params, set_iterations
from daggerlm.errors import InputError
from daggerlm.io import parse_overrides
from tests.conftest import REPO


def test_iterations_set_keeps_comments_and_quotes(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    original = path.read_text()
    set_iterations(path, load_params(path).dagger.iterations)
    assert path.read_text() == original  # nothing to change: byte for byte the same
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "iterations", "set", "4", "--params", str(path),
                        "--dvc-file", str(tmp_path / "dvc.yaml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = path.read_text()
    assert load_params(path).dagger.iterations == 4 and "pipeline" not in yaml.safe_load(text)
    assert [line for line in text.splitlines() if line.lstrip().startswith("#")] == \
        [line for line in original.splitlines() if line.lstrip().startswith("#")]
    assert 'PYTEST_DISABLE_PLUGIN_AUTOLOAD: "1"' in text


def test_bad_value_names_file_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("dagger:\n  beta: {kind: constant, value: 1.5}\n")
    with pytest.raises(InputError, match=r"params.yaml.*dagger\.beta.*1"):
        load_params(path)


def test_shipped_gpu_params_load():
    from daggerlm.config import load_params
    from tests.conftest import REPO

    p = load_params(REPO / "infra" / "params.gpu.yaml")
    assert p.student.kind == "openai" and p.student.server.lora and p.teacher.endpoint.api_key_env == "OPENAI_API_KEY"


def test_partial_sft_keeps_the_other_defaults():
    """An override of one SFT key (the science bench's epochs) must not drop the learning rate and
    schedule to TRL's defaults."""
    shipped = load_params(REPO / "params.yaml").train
    for params in (load_params(None, {"train.sft.num_train_epochs": 3}),
                   load_params(None, {"train.sft": {"learning_rate": 1e-3}, "train.lora": {"r": 4}})):
        sft, lora = params.train.sft, params.train.lora
        assert sft["lr_scheduler_type"] == shipped.sft["lr_scheduler_type"] == "cosine"
        assert sft["per_device_train_batch_size"] == shipped.sft["per_device_train_batch_size"]
        assert lora["target_modules"] == shipped.lora["target_modules"]
    epochs_only = load_params(None, {"train.sft.num_train_epochs": 3}).train.sft
    assert epochs_only["learning_rate"] == shipped.sft["learning_rate"] and epochs_only["num_train_epochs"] == 3
    assert params.train.sft["learning_rate"] == 1e-3 and params.train.lora["r"] == 4


def test_exponent_floats_without_a_dot_are_floats_in_params_andparse_overrides(tmp_path):
    """YAML 1.1 (PyYAML) reads `4e-4` as a string, which TRL then rejects deep inside the optimizer."""
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  sft: {learning_rate: 4e-4, warmup_steps: 1E1}\n")
    assert load_params(path).train.sft["learning_rate"] == 4e-4
    assert load_params(path).train.sft["warmup_steps"] == 10.0
    assert load_params(path, parse_overrides(["train.sft.learning_rate=2e-5"])).train.sft["learning_rate"] == 2e-5
    assert parse_overrides(["student.model=1e3x", "seed=7"]) == {"student.model": "1e3x", "seed": 7}  # only numbers


def test_a_split_without_a_source_is_synthetic_so_the_shipped_params_keep_their_meaning():
    from daggerlm.config import FileSource, HubSource, MutationSource, SyntheticSource

    shipped = load_params(REPO / "params.yaml").instances
    assert shipped.train == shipped.eval == SyntheticSource(n=12, seed=0)
    assert (shipped.modules_per_repo, shipped.functions_per_module) == (2, 3)
    p = load_params(None, {"instances.train": {"source": "file", "path": "data/mine.parquet", "ids": ["a", "b"]},
                           "instances.eval": {"source": "hf", "name": "SWE-Gym/SWE-Gym", "split": "train",
                                              "slice": "10:"}})
    assert isinstance(p.instances.train, FileSource) and p.instances.train.ids == ["a", "b"]
    assert isinstance(p.instances.eval, HubSource) and p.instances.eval.bounds(30) == (10, 30)
    m = load_params(None, {"instances.train": {"source": "mutation", "n": 4, "libraries": ["toolz"]}}).instances.train
    assert isinstance(m, MutationSource) and m.libraries_file is None and m.cache == ".daggerlm/libraries"


@pytest.mark.parametrize("split, message", [
    ({"source": "files", "path": "x.jsonl"},
     "instances.train.source: 'files' is not a source; expected one of synthetic, file, hf, mutation"),
    ({"source": "file", "path": "x.jsonl", "n": 3},
     "unknown key 'instances.train.n'; allowed: ids, official_images, path, slice, source"),
    ({"n": 3, "path": "x.jsonl"}, "unknown key 'instances.train.path'; allowed: n, seed, source"),
    ({"source": "hf"}, "instances.train.name: required, missing"),
    ({"source": "mutation", "libraries": ["toolz"]}, "instances.train.n: required, missing"),
    ({"source": "hf", "name": "a/b", "slice": "3-5"},
     "instances.train.slice: Value error, expected start:stop with non-negative integers, e.g. '0:50' (got '3-5')"),
])
def test_bad_instance_sources_are_one_line_naming_the_key(tmp_path, split, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"instances": {"train": split}}))
    with pytest.raises(InputError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: {message}"


@pytest.mark.parametrize("overrides,message", [
    ({"train.objective.alpha": 0.5}, "needs the teacher's log-prob of each token .* teacher.kind oracle gives text"),
    ({"train.objective.targets": "top_k", "teacher.kind": "openai"},
     "top-k log-probs .* teacher.kind openai without endpoint.logprobs gives text labels only"),
    ({"train.objective.targets": "full", "teacher.kind": "openai", "teacher.endpoint.logprobs": True},
     "full distribution .* openai with endpoint.logprobs gives top-k log-probs only"),
    ({"train.objective.prefix": "student"}, "train.objective: prefix: student with hard forward targets"),
    ({"train.objective.gamma": 0.9, "train.objective.targets": "full", "teacher.kind": "hf", "teacher.model": "m"},
     "gamma > 0 .* needs prefix: student"),
    ({"teacher.kind": "hf"}, "teacher.kind hf needs teacher.model"),
    ({"train.objective": {"alpha": 0.0, "temperature": 2.0}, "teacher.kind": "openai",
      "teacher.endpoint.logprobs": True},
     "train.objective.temperature: a served teacher's log-prob of a token is at temperature 1"),
])
def test_an_objective_the_teacher_cannot_serve_fails_in_one_line(tmp_path, overrides, message):
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    with pytest.raises(InputError, match=message) as err:
        load_params(path, overrides)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value) and "got {" not in str(err.value)


def test_the_objectives_an_hf_teacher_serves_load_and_the_default_is_sft():
    assert load_params(REPO / "params.yaml").train.objective.is_sft
    p = load_params(None, {"teacher.kind": "hf", "teacher.model": "m", "train.objective":
                           {"prefix": "student", "targets": "full", "alpha": 0.75, "gamma": 0.5}})
    assert not p.train.objective.is_sft and p.teacher.gives() == "full"
    served = load_params(None, {"teacher.kind": "openai", "teacher.endpoint.logprobs": True, "train.objective":
                                {"prefix": "student", "targets": "top_k", "k": 5, "alpha": 0.5, "temperature": 2.0}})
    assert served.teacher.gives() == "top_k" and served.train.objective.teacher_needs()

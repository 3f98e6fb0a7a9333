"""Each split's source (synthetic, file, hf, mutation) loads and materializes; bad input is one line."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from daggerlm.config import InstancesConfig
from daggerlm.errors import InputError
from daggerlm.instances import load_instances, write_instances
from daggerlm.instances.sources import materialize, source_deps, split_instances
from daggerlm.instances.synthetic import generate
from tests.conftest import GYM_SAMPLE, REPO



def cfg(**splits) -> InstancesConfig:
    return InstancesConfig.model_validate(splits)


def ids(items) -> list[str]:
    return [i.instance_id for i in items]


def test_synthetic_is_the_default_and_generates_as_before(runtime):
    splits = materialize(cfg(train={"n": 3, "seed": 2}, eval={"n": 2, "seed": 5}), runtime)
    assert ids(splits["train"]) == ids(generate(3, "train", 2)) and ids(splits["eval"]) == ids(generate(2, "eval", 5))


def test_file_source_jsonl_and_parquet_with_ids_and_slice(tmp_path, runtime, swebench_sample):
    synthetic = generate(4, "train", 9)
    write_instances(tmp_path / "mine.jsonl", synthetic)
    rows = [json.loads(line) for line in swebench_sample.read_text().splitlines()]
    keep = ("instance_id", "repo", "base_commit", "patch", "test_patch", "problem_statement", "FAIL_TO_PASS",
            "PASS_TO_PASS", "version")
    pd.DataFrame([{k: r[k] for k in keep} for r in rows]).to_parquet(tmp_path / "verified.parquet")
    splits = materialize(cfg(train={"source": "file", "path": str(tmp_path / "mine.jsonl"), "slice": "1:3"},
                             eval={"source": "file", "path": str(tmp_path / "verified.parquet"),
                                   "ids": ["sympy__sympy-20916", "django__django-10973"]}), runtime)
    assert ids(splits["train"]) == ids(synthetic[1:3]) and splits["train"][0].repo_files == synthetic[1].repo_files
    assert ids(splits["eval"]) == ["sympy__sympy-20916", "django__django-10973"]  # in the order asked
    # SWE-bench records that cannot run locally get their official image, so they run in Docker
    assert all(i.image and i.image.startswith("swebench/sweb.eval.x86_64.") and i.eval_script
               for i in splits["eval"])
    plain = split_instances(cfg(eval={"source": "file", "path": str(tmp_path / "verified.parquet"),
                                      "official_images": False}), "eval", runtime)
    assert len(plain) == 5 and not any(i.image for i in plain)


def test_hf_source_by_name_split_and_slice(gym_hub, runtime):
    items = split_instances(cfg(train={"source": "hf", "name": gym_hub, "split": "train", "slice": "1:3"}), "train",
                            runtime)
    every = [json.loads(line)["instance_id"] for line in GYM_SAMPLE.read_text().splitlines()]
    assert ids(items) == every[1:3] and {i.source for i in items} == {"swe-gym"}
    assert all(i.image.startswith("xingyaoww/") for i in items)
    unknown = cfg(train={"source": "hf", "name": gym_hub, "split": "train", "ids": ["nope__nope-1"]})
    with pytest.raises(InputError, match=r"^instances\.train\.ids: 'nope__nope-1' is not in hf SWE-Gym/SWE-Gym\[train\]"):
        split_instances(unknown, "train", runtime)


def test_deps_are_the_local_files_the_sources_name():
    c = cfg(train={"source": "file", "path": "data/mine.jsonl"},
            eval={"source": "mutation", "n": 2, "libraries_file": "my_libraries.yaml"})
    assert source_deps(c) == [Path("data/mine.jsonl"), Path("my_libraries.yaml")]
    assert source_deps(cfg(eval={"source": "mutation", "n": 2}, train={"source": "hf", "name": "a/b"})) == []


def _bad_libraries(tmp_path: Path) -> str:
    path = tmp_path / "libs.yaml"
    path.write_text("toolz: {version: '1.2.0', package: toolz, tests: toolz/tests, pytest_arg: []}\n")
    return str(path)


@pytest.mark.parametrize("make, message", [
    (lambda tmp: {"train": {"source": "file", "path": f"{tmp}/absent.jsonl"}},
     "instances.train.path: {tmp}/absent.jsonl: file not found"),
    (lambda tmp: {"eval": {"source": "file", "path": f"{tmp}/records.csv"}},
     "instances.eval.path: {tmp}/records.csv: expected a .jsonl, .json, .parquet file of instance records"),
    (lambda tmp: {"train": {"source": "file", "path": f"{tmp}/two.jsonl", "slice": "5:"}},
     "instances.train: no instances selected from file {tmp}/two.jsonl (2 records, slice 5:)"),
    (lambda tmp: {"train": {"source": "mutation", "n": 2, "libraries": ["toolz", "numpy"]}},
     f"instances.train.libraries: 'numpy' is not in {REPO}/daggerlm/instances/libraries.yaml (known: toolz, "),
    (lambda tmp: {"train": {"source": "mutation", "n": 1, "libraries_file": _bad_libraries(tmp)}},
     "{tmp}/libs.yaml: toolz: unknown field 'pytest_arg'; expected version, package, tests, pytest_args, "
     "test_requires, exclude"),
    (lambda tmp: {"train": {"source": "mutation", "n": 1, "libraries_file": f"{tmp}/none.yaml"}},
     "{tmp}/none.yaml: libraries file not found"),
    (lambda tmp: {"train": {"source": "file", "path": f"{tmp}/two.jsonl"},
                  "eval": {"source": "file", "path": f"{tmp}/two.jsonl", "ids": ["{second}"]}},
     "instances.train (file {tmp}/two.jsonl) and instances.eval (file {tmp}/two.jsonl) share instance id "
     "'{second}'; the splits must be disjoint"),
], ids=["missing-file", "wrong-suffix", "empty-slice", "unknown-library", "libraries-unknown-field",
        "libraries-file-missing", "overlap"])
def test_bad_sources_are_one_line_naming_what_was_expected(tmp_path, runtime, make, message):
    two = generate(2, "train", 4)
    write_instances(tmp_path / "two.jsonl", two)
    spec = json.loads(json.dumps(make(tmp_path)).replace("{second}", two[1].instance_id))
    with pytest.raises(InputError) as err:
        materialize(cfg(**spec), runtime)
    expected = message.format(tmp=tmp_path, second=two[1].instance_id)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value), str(err.value)


def test_overlapping_splits_exit_2_with_one_line_from_the_stage_command(tmp_path):
    write_instances(tmp_path / "mine.jsonl", generate(3, "eval", 0))  # the synthetic eval split's first three
    (tmp_path / "p.yaml").write_text("{}\n")
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "stage", "instances",
                        "--params", str(tmp_path / "p.yaml"),
                        "--set", f"data={tmp_path / 'data'}", "--set", "instances.eval.n=3", "--set",
                        f"instances.train={{source: file, path: {tmp_path / 'mine.jsonl'}}}"],
                       capture_output=True, text=True, cwd=REPO)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: instances.train (file {tmp_path / 'mine.jsonl'}) and instances.eval "
                               "(synthetic (seed 0)) share instance id '") and "(and 2 more)" in lines[0]
    assert not (tmp_path / "data" / "instances" / "train.jsonl").exists()


MUTATION_LIBRARIES = ["toolz", "wcwidth"]  # wcwidth: the quickest suite of the new ones


def test_mutation_source_from_two_libraries_and_an_eval_split_that_avoids_train(tmp_path):
    """n=2 over toolz and a second library: one instance of each; eval from the same libraries gets
    others. The params it reads (runtime: where the suites run) are the stage's declared ones."""
    from daggerlm.config import record_reads
    from daggerlm.dagger.pipeline import BY_NAME
    from tests.conftest import tiny_params
    from tests.dagger.test_loop import undeclared

    spec = {"source": "mutation", "n": 2, "libraries": MUTATION_LIBRARIES, "cache": str(tmp_path / "cache"),
            "workers": 1}
    p = tiny_params(tmp_path, **{"instances.train": spec, "instances.eval": spec,
                                 "runtime.envs_dir": str(tmp_path / "envs")})
    with record_reads(p) as seen:
        splits = materialize(p.instances, p.runtime)
    assert {"instances.train.libraries", "runtime.envs_dir"} <= seen and not undeclared(BY_NAME["instances"], seen)
    for split in ("train", "eval"):
        items = splits[split]
        assert [i.repo for i in items] == [f"pypi/{name}" for name in MUTATION_LIBRARIES]
        assert all(i.source == "mutation" and i.FAIL_TO_PASS and i.PASS_TO_PASS and not i.image for i in items)
    assert not set(ids(splits["train"])) & set(ids(splits["eval"]))
    write_instances(tmp_path / "train.jsonl", splits["train"])
    assert ids(load_instances(tmp_path / "train.jsonl")) == ids(splits["train"])

"""SWE-Gym records through `daggerlm docker build-instances`: SWE-Gym's images, its repositories' test
commands, and the hub loader's `--split` (SWE-Gym has only `train`).

tests/fixtures/swegym_sample.jsonl holds SWE-Gym-shaped records (the dataset's fields, real test file
paths and test-id formats of five of its repositories); their patches are illustrative, not copies.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT, TEST_EXIT_CODE
from swebench.harness.log_parsers import PARSER_REGISTRY
from swebench.harness.utils import make_test_spec
from typer.testing import CliRunner

from daggerlm.cli import app
from daggerlm.errors import InputError
from daggerlm.evaluation.grading import patched_files
from daggerlm.evaluation.harness import repo_specs, swebench_spec
from daggerlm.instances import load_instances
from daggerlm.instances.load import load_hub
from daggerlm.runtime.images import official_image_name, sweb_image_name
from tests.conftest import GYM_SAMPLE

SWE_GYM_REPOS = {"Project-MONAI/MONAI", "python/mypy", "conan-io/conan", "iterative/dvc", "getmoto/moto",
                 "bokeh/bokeh", "pydantic/pydantic", "dask/dask", "facebookresearch/hydra",
                 "modin-project/modin", "pandas-dev/pandas"}


def _build_instances(instances: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daggerlm.cli", "docker", "build-instances", str(instances),
                           "--out", str(out)], capture_output=True, text=True)


def _test_command(script: str) -> str:
    """The one command between swebench's output markers."""
    return re.search(f": '{START_TEST_OUTPUT}'\n(.*)\n: '{END_TEST_OUTPUT}'", script).group(1)


def test_every_swegym_repository_has_a_spec_under_swegym_images():
    specs = repo_specs()
    assert {repo for repo, spec in specs.items() if spec.get("images") == "swe-gym"} == SWE_GYM_REPOS


def test_build_instances_gives_swegym_records_their_images_and_test_commands(tmp_path):
    rows = [json.loads(line) for line in GYM_SAMPLE.read_text().splitlines()]
    assert len({r["repo"] for r in rows}) >= 3 and "source" not in rows[0]  # as the dataset has them
    out = tmp_path / "with_spec.jsonl"
    r = _build_instances(GYM_SAMPLE, out)
    assert r.returncode == 0, r.stderr
    built = {i.instance_id: i for i in load_instances(out)}
    assert list(built) == [r["instance_id"] for r in rows]
    assert built["getmoto__moto-5752"].image == "xingyaoww/sweb.eval.x86_64.getmoto_s_moto-5752:latest"
    assert built["Project-MONAI__MONAI-5686"].image == "xingyaoww/sweb.eval.x86_64.project-monai_s_monai-5686:latest"
    for row in rows:
        inst = built[row["instance_id"]]
        assert inst.log_parser == "parse_log_pytest" and inst.eval_type == "pass_and_fail"
        subprocess.run(["bash", "-n"], input=inst.eval_script, text=True, check=True)  # it parses as bash
        test_spec = make_test_spec(inst.model_dump())  # swebench accepts it ...
        assert any(TEST_EXIT_CODE in line for line in test_spec.eval_script_list)  # ... and finds its end marker
        command = _test_command(inst.eval_script)
        assert command.startswith(repo_specs()[inst.repo]["test_cmd"] + " ")
        if inst.repo == "python/mypy":  # its cases live in .test files: selected by name, as SWE-Gym does
            assert command.endswith(" -k 'testDataclassFieldDefaultTypedDictUnpacking or "
                                    "testDataclassFieldDefaultTypedDictUnpackingError'")
            assert all(test.rsplit("::", 1)[1] in command for test in inst.FAIL_TO_PASS)
        else:
            assert command.split()[-len(patched_files(inst.test_patch)):] == patched_files(inst.test_patch)
            assert all(test.split("::")[0] in command.split() for test in inst.FAIL_TO_PASS + inst.PASS_TO_PASS)
        # the parser reads pytest's -rA summary of the instance's tests
        summary = "\n".join(f"PASSED {test}" for test in inst.FAIL_TO_PASS)
        assert PARSER_REGISTRY[inst.log_parser](summary, test_spec) == {t: "PASSED" for t in inst.FAIL_TO_PASS}
    conan = built["conan-io__conan-13326"].eval_script
    assert conan.index("export PYTHONPATH=${PYTHONPATH:-}:/testbed") < conan.index(START_TEST_OUTPUT)


def test_a_namespace_moves_the_images_not_their_names():
    moto = load_instances(GYM_SAMPLE)[0]
    assert swebench_spec(moto, "registry.local:5000/gym")["image"] == \
        "registry.local:5000/gym/sweb.eval.x86_64.getmoto_s_moto-5752:latest"
    # SWE-bench's images keep swebench's own naming rule
    assert official_image_name("django__django-10973", "swebench") == sweb_image_name("django__django-10973", "swebench")


def test_a_repository_without_a_spec_is_one_line(tmp_path):
    row = json.loads(GYM_SAMPLE.read_text().splitlines()[0])
    row.update(instance_id="wandb__wandb-6000", repo="wandb/wandb")
    path = tmp_path / "unknown.jsonl"
    path.write_text(json.dumps(row) + "\n")
    r = _build_instances(path, tmp_path / "out.jsonl")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: instance wandb__wandb-6000: repo 'wandb/wandb' is not in ")
    assert not (tmp_path / "out.jsonl").exists()


def test_hub_split_train_loads_and_a_missing_split_is_named(gym_hub, tmp_path):
    items = load_hub(gym_hub, "train")
    assert len(items) == 5 and {i.source for i in items} == {"swe-gym"}
    with pytest.raises(InputError) as err:
        load_hub(gym_hub)  # the default split, test
    assert str(err.value) == "dataset 'SWE-Gym/SWE-Gym' has no split 'test' (it has: train); choose one with --split"

    runner = CliRunner()
    out = tmp_path / "with_spec.jsonl"
    done = runner.invoke(app, ["docker", "build-instances", gym_hub, "--split", "train", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert {i.image.split("/")[0] for i in load_instances(out)} == {"xingyaoww"}
    done = runner.invoke(app, ["instances", "validate", gym_hub, "--split", "train"])
    assert json.loads(done.stdout.strip().splitlines()[-1])["sources"] == {"swe-gym": 5}
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    for command in (["grade", "--instances", gym_hub, "--predictions", str(tmp_path / "p.jsonl"), "--out", str(out)],
                    ["evaluate", "--instances", gym_hub, "--out", str(tmp_path / "eval"), "-p", str(params)],
                    ["instances", "show", gym_hub], ["docker", "build-instances", gym_hub, "--out", str(out)]):
        failed = runner.invoke(app, command)
        assert isinstance(failed.exception, InputError) and "no split 'test'" in str(failed.exception), command

"""The official harness: Docker specs for SWE-bench records, and `run_evaluation` agreeing with our grading."""

import re
import subprocess

import pytest
from swebench.harness.constants import TEST_EXIT_CODE
from swebench.harness.utils import make_test_spec

from daggerlm.errors import InputError
from daggerlm.evaluation.grading import grade, patched_files
from daggerlm.evaluation.harness import HEREDOC, repo_specs, run_official, swebench_spec, with_docker_spec
from daggerlm.instances import load_instances
from daggerlm.instances.library_bugs import build_library_env, fetch
from daggerlm.instances.git import git

EXPECTED_PARSERS = {"django/django": "parse_log_django", "pylint-dev/pylint": "parse_log_pylint",
                    "sphinx-doc/sphinx": "parse_log_sphinx", "sympy/sympy": "parse_log_sympy",
                    "scikit-learn/scikit-learn": "parse_log_scikit"}


def test_verified_records_get_the_official_image_and_eval_script(swebench_sample):
    instances = load_instances(swebench_sample)
    assert len(instances) == 5
    for inst in instances:
        spec = swebench_spec(inst)
        owner_repo = inst.instance_id.replace("__", "_1776_")
        assert spec["image"] == f"swebench/sweb.eval.x86_64.{owner_repo}:latest"
        assert spec["log_parser"] == EXPECTED_PARSERS[inst.repo]
        script = spec["eval_script"]
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # it parses as bash
        test_spec = make_test_spec({**inst.model_dump(), **spec})  # swebench accepts it ...
        assert any(TEST_EXIT_CODE in line for line in test_spec.eval_script_list)  # ... and finds its end marker
        heredoc = re.search(f"<<'{HEREDOC}'\n(.*)\n{HEREDOC}\n", script, re.S).group(1)
        assert heredoc == inst.test_patch.rstrip("\n")  # the test patch arrives byte for byte
        reset = f"git checkout {inst.base_commit} {' '.join(patched_files(inst.test_patch))}"
        assert script.count(reset) == 2  # the test files are reset before and after
        assert "conda activate testbed" in script
    django = swebench_spec(next(i for i in instances if i.repo == "django/django"))
    assert "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1 dbshell.test_postgresql\n" \
        in django["eval_script"]


def test_unknown_repositories_and_bad_parsers_are_refused(swebench_sample, tmp_path):
    inst = load_instances(swebench_sample)[0].model_copy(update={"repo": "someone/else"})
    with pytest.raises(InputError, match="repo 'someone/else' is not in"):
        swebench_spec(inst)
    bad = tmp_path / "repos.yaml"
    bad.write_text("a/b:\n  test_cmd: pytest\n  log_parser: parse_log_nothing\n")
    with pytest.raises(InputError, match="parse_log_nothing"):
        repo_specs(bad)
    assert "django/django" in repo_specs()


def _touch_patch(inst, tmp_path):
    """A patch that applies but fixes nothing: a comment appended to the package's __init__."""
    work = tmp_path / inst.instance_id
    git(tmp_path, "clone", "-q", inst.repo_snapshot, str(work))
    git(work, "checkout", "-q", inst.base_commit)
    with open(work / "toolz" / "__init__.py", "a") as f:
        f.write("# touched\n")
    return git(work, "diff")


def test_official_harness_agrees_with_our_grading(toolz_run, docker_runtime, tmp_path):
    lib, runtime, root, instances, _ = toolz_run
    build_library_env(lib, *fetch(lib, root / "cache"), docker_runtime)
    spec = [with_docker_spec(i) for i in instances]
    touched = {i.instance_id: _touch_patch(i, tmp_path) for i in spec[:2]}
    runs = {"gold": {i.instance_id: i.patch for i in spec}, "empty": {i.instance_id: "" for i in spec},
            "touched": touched}
    for run_id, patches in runs.items():
        report = run_official([i for i in spec if i.instance_id in patches], patches, run_id, tmp_path / "harness")
        assert not report["error_ids"]
        official = set(report["resolved_ids"])
        for inst in spec:
            if inst.instance_id in patches:
                ours = grade(inst, patches[inst.instance_id], docker_runtime)["resolved"]
                assert ours == (inst.instance_id in official) == (run_id == "gold"), (run_id, inst.instance_id)
                assert grade(inst, patches[inst.instance_id], runtime)["resolved"] == ours  # and locally
    assert len(report["unresolved_ids"]) == 2  # the touched run: ran, graded, not resolved

"""Procedural bugs in a real library (toolz from its sdist), validated by its own test suite."""

import pytest

from daggerlm.config import AgentConfig
from daggerlm.evaluation import evaluate
from daggerlm.evaluation.grading import grade
from daggerlm.instances.library_bugs import Library, LibrarySkipped, fetch, mutate_library
from daggerlm.policies import make_policy
from daggerlm.instances.git import git
from tests.conftest import TOOLZ_N


def test_instances_break_some_tests_and_gold_fixes_them(toolz_run):
    lib, runtime, _, instances, report = toolz_run
    assert len(instances) == TOOLZ_N and report["kept"] == TOOLZ_N and report["tests"] > 100
    for inst in instances:
        assert inst.source == "mutation" and inst.environment == lib.label
        assert inst.FAIL_TO_PASS and inst.PASS_TO_PASS and not set(inst.FAIL_TO_PASS) & set(inst.PASS_TO_PASS)
        assert inst.patch.count("\n+") >= 1 and "tests/" not in inst.patch.split("\n")[0]
        assert any(t in inst.problem_statement for t in inst.FAIL_TO_PASS)
        assert grade(inst, inst.patch, runtime)["resolved"]
        assert not grade(inst, "", runtime)["resolved"]


def test_same_seed_gives_identical_instances_from_scratch(toolz_run, tmp_path):
    lib, runtime, _, instances, _ = toolz_run
    # a fresh download, commit and validation; candidates are kept in seeded order, so n=2 is a prefix of n=3
    again, _ = mutate_library(lib, 2, seed=3, cache=tmp_path / "cache", runtime=runtime, workers=2)
    strip = lambda items: [i.model_dump(exclude={"repo_snapshot"}) for i in items]  # noqa: E731
    assert strip(again) == strip(instances[:2])  # same commits, patches, tests: nothing depends on the machine


def test_the_oracle_resolves_them(toolz_run, tmp_path):
    _, runtime, _, instances, _ = toolz_run
    metrics = evaluate(instances, make_policy("oracle"), tmp_path / "eval", runtime=runtime, agent=AgentConfig(),
                       concurrency=2)
    assert metrics["resolve_rate"] >= 0.95, metrics


def test_libraries_without_tests_or_with_a_failing_suite_are_skipped_with_a_reason(toolz_run, monkeypatch):
    lib, runtime, root, instances, _ = toolz_run
    no_tests = Library(name="toolz", version=lib.version, package="toolz", tests="toolz/no_such_tests")
    with pytest.raises(LibrarySkipped, match="ran no tests"):
        mutate_library(no_tests, 1, 0, root / "cache", runtime)
    # a library whose own suite already fails: its "clean" commit carries one of the bugs above
    repo, clean = fetch(lib, root / "cache")
    buggy = instances[0].base_commit
    monkeypatch.setattr("daggerlm.instances.library_bugs.fetch", lambda *a: (repo, buggy))
    with pytest.raises(LibrarySkipped, match=r"tests fail before any mutation, e\.g\. "):
        mutate_library(lib, 1, 0, root / "cache", runtime)
    assert git(repo, "rev-parse", f"{buggy}^").strip() == clean


def test_an_instances_file_moves_with_its_snapshot(toolz_run, tmp_path):
    """The file names its snapshot relative to itself: move both elsewhere and the instance still runs."""
    import json
    import shutil

    from daggerlm.instances import load_instances, write_instances

    _, runtime, _, instances, _ = toolz_run
    snapshot = instances[0].repo_snapshot
    first = tmp_path / "first"
    shutil.copytree(snapshot, first / "snapshots" / "toolz.git")
    moved = instances[0].model_copy(update={"repo_snapshot": str(first / "snapshots" / "toolz.git")})
    write_instances(first / "data" / "instances.jsonl", [moved])
    stored = json.loads((first / "data" / "instances.jsonl").read_text())["repo_snapshot"]
    assert stored == "../snapshots/toolz.git"
    second = tmp_path / "elsewhere" / "project"
    shutil.move(first, second)
    [loaded] = load_instances(second / "data" / "instances.jsonl")
    assert loaded.repo_snapshot == str(second / "snapshots" / "toolz.git")
    assert grade(loaded, loaded.patch, runtime)["resolved"] and not grade(loaded, "", runtime)["resolved"]

"""Procedural bugs in real libraries (toolz, and cachetools in the src layout, from their sdists), validated by
their own test suites."""

from pathlib import Path

import pytest

from daggerlm.config import AgentConfig, RuntimeConfig
from daggerlm.errors import InputError
from daggerlm.evaluation import evaluate
from daggerlm.evaluation.grading import grade
from daggerlm.instances import library_bugs
from daggerlm.instances.library_bugs import (Library, LibrarySkipped, fetch, load_libraries, mutate_library,
                                            run_suite)
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


# --- a src-layout library (cachetools: src/cachetools, tests importing the installed package) ---------

SRC_LAYOUT = Path(__file__).resolve().parents[1] / "fixtures" / "src_layout_libraries.yaml"


@pytest.fixture(scope="module")
def cachetools_run(tmp_path_factory):
    """Two instances of cachetools (seed 0) from a user's libraries file."""
    lib = load_libraries(SRC_LAYOUT)["cachetools"]
    root = tmp_path_factory.mktemp("cachetools")
    runtime = RuntimeConfig(envs_dir=str(root / "envs"), workdir=str(root))
    instances, report = mutate_library(lib, 2, seed=0, cache=root / "cache", runtime=runtime, workers=2)
    return lib, runtime, root, instances, report


def test_a_src_layout_library_is_mutated_in_the_worktree_its_tests_import(cachetools_run):
    lib, runtime, _, instances, report = cachetools_run
    assert report["kept"] == 2 and len(instances) == 2, f"{report}"  # before: kept 0, 446 rejected "no test fails"
    assert report["tried"] < 20, report  # its tests catch most mutants once they see them
    for inst in instances:
        assert "src/cachetools/" in inst.patch.split("\n")[0]
        repo = Path(inst.repo_snapshot)
        mutated = run_suite(lib, repo, inst.base_commit, runtime, timeout_s=60)
        assert all(mutated.status.get(t) != "PASSED" for t in inst.FAIL_TO_PASS), mutated.log[-2000:]
        assert grade(inst, inst.patch, runtime)["resolved"] and not grade(inst, "", runtime)["resolved"]


@pytest.fixture()
def installed_not_editable(cachetools_run, monkeypatch):
    """cachetools as it was set up before: the sdist's package installed into site-packages, nothing of
    the worktree on sys.path, so its tests import that copy whatever the worktree holds."""
    lib, _, root, _, _ = cachetools_run
    monkeypatch.setattr("daggerlm.instances.library_bugs.worktree_paths", lambda *a: [])
    runtime = RuntimeConfig(envs_dir=str(root / "envs-not-editable"), workdir=str(root))
    return lib, runtime, root / "cache"


def test_a_library_whose_tests_do_not_see_the_worktree_stops_with_one_line(installed_not_editable):
    lib, runtime, cache = installed_not_editable
    with pytest.raises(InputError) as e:
        mutate_library(lib, 1, seed=0, cache=cache, runtime=runtime)
    message = str(e.value)
    assert "\n" not in message and message.startswith("library cachetools: ")
    assert "passes with the package broken" in message, message


def test_a_library_whose_first_candidates_fail_for_one_reason_stops_early(installed_not_editable, monkeypatch):
    """The issue's run: every mutant rejected as 'no test fails' (292 of them, 11 minutes); now it stops at 20."""
    lib, runtime, cache = installed_not_editable
    monkeypatch.setattr("daggerlm.instances.library_bugs.check_tests_see_the_worktree", lambda *a: None)
    tried = []
    real = library_bugs.validate
    monkeypatch.setattr("daggerlm.instances.library_bugs.validate", lambda *a: tried.append(1) or real(*a))
    with pytest.raises(InputError) as e:
        mutate_library(lib, 1, seed=0, cache=cache, runtime=runtime, workers=2)
    message = str(e.value)
    assert "\n" not in message and message.startswith("library cachetools: ")
    assert f"its first {library_bugs.EARLY_STOP} mutations were all rejected: no test fails" in message, message
    assert len(tried) < library_bugs.EARLY_STOP + 4  # the batch under way finishes; no more start

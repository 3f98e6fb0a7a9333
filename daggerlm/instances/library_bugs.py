"""Task instances from real libraries: one procedural bug each, validated by the library's own tests.

1. Fetch the library's pinned source distribution (`pip download`, once) and commit it to a git
   repository with a fixed identity, so the clean commit is the same on every machine.
2. Build its environment: its test dependencies, and its worktree first on `sys.path` (the
   current directory in the flat layout, `src` in the src layout: an editable install), so that the
   tests import the code under mutation, never a copy installed from the sdist.
   Run its test suite in the sandbox on the clean commit: a library with no tests, or whose suite
   fails before any mutation, is reported and skipped with the reason. Then run it once more with
   the package deliberately broken: a suite that still passes does not test the worktree, and the
   library stops there with the reason (every mutant would be rejected as "no test fails").
3. Enumerate single-node mutations (`ast_mutations`) in its non-test modules, shuffle them with the
   seed, and validate them in parallel: commit the mutant, run the suite, keep it if ≥ 1 test that
   passed now fails (FAIL_TO_PASS) while ≥ 1 still passes (PASS_TO_PASS). A library whose first
   `EARLY_STOP` candidates are all rejected for one reason stops there with that reason.
4. The gold patch is the reverse diff; grading re-checks that it resolves and that an empty patch
   does not. Validation outcomes are kept per candidate, so an interrupted run resumes.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import yaml
from swebench.harness.log_parsers.python import parse_log_pytest

from daggerlm.config import RuntimeConfig
from daggerlm.errors import InputError
from daggerlm.evaluation.grading import grade, suite_runtime
from daggerlm.instances.ast_mutations import AstMutation, candidates
from daggerlm.instances.schema import Instance
from daggerlm.io import ResultStore, atomic_write_text, stable_hash
from daggerlm.runtime import open_sandbox, runs_in_docker
from daggerlm.runtime.envs import build_env
from daggerlm.instances.git import commit_file_change, commit_files, git

LIBRARIES = Path(__file__).with_name("libraries.yaml")
FAILED = ("FAILED", "ERROR")
FINE = ("PASSED", "SKIPPED", "XFAIL")
EARLY_STOP = 20
"""A library stops when its first this many candidates are all rejected for one reason. Why twenty: a
suite that tests the worktree keeps most single-node mutants (seed 0: toolz 16 of its first 20,
cachetools 16 of 20; the rest "no test fails" or a hang), so even a library whose suite lets half of
them through rejects twenty in a row by chance about once in a million (0.5 ** 20); twenty in a row
for one reason mean the setup is wrong (the suite does not see the worktree, hangs, or grading
disagrees). And twenty cost well under a minute for a suite that runs in seconds, where all of a
library's candidates take many times that (cachetools' 446, all rejected when its tests imported an
installed copy: 13 minutes on 2 busy cores; toolz has 906)."""


@dataclass(frozen=True)
class Library:
    name: str
    version: str
    package: str
    """The package to mutate: its directory in the sdist (`src/mylib`), or its name (found as `mylib/`
    or `src/mylib/`)."""
    tests: str
    pytest_args: list[str] = field(default_factory=list)
    test_requires: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    """Files of the sdist left out of the repository (e.g. a pytest config whose addopts need a plugin)."""

    @property
    def label(self) -> str:
        return f"{self.name}-{self.version}"


class LibrarySkipped(Exception):
    """The library cannot give instances; the message says why."""


def load_libraries(path: str | Path = LIBRARIES) -> dict[str, Library]:
    """The libraries of a YAML file in the shape of libraries.yaml; bad input is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: libraries file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of library name to its spec")
    fields = [f for f in Library.__dataclass_fields__ if f != "name"]
    required = ("version", "package", "tests")
    for name, spec in data.items():
        if not isinstance(spec, dict):
            raise InputError(f"{path}: {name}: expected a mapping with {', '.join(fields)}")
        if unknown := sorted(set(spec) - set(fields)):
            raise InputError(f"{path}: {name}: unknown field '{unknown[0]}'; expected {', '.join(fields)}")
        if missing := [f for f in required if f not in spec]:
            raise InputError(f"{path}: {name}: missing field '{missing[0]}' (required: {', '.join(required)})")
    return {name: Library(name=name, **spec) for name, spec in data.items()}


def library_dir(lib: Library, cache: Path) -> Path:
    """Where the library's repository and validation results live (one per version and left-out files)."""
    return cache / (lib.label + (f"-{stable_hash(sorted(lib.exclude))[:8]}" if lib.exclude else ""))


def fetch(lib: Library, cache: Path) -> tuple[Path, str]:
    """(git repository of the sdist, its clean commit); downloaded and committed once per version."""
    root = library_dir(lib, cache)
    done = root / "clean_commit"
    if done.is_file():
        return root / "repo", done.read_text().strip()
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            "-d", tmp, f"{lib.name}=={lib.version}"], capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if r.returncode != 0 or not archives:
            raise LibrarySkipped(f"{lib.label}: no source distribution could be downloaded "
                                 f"({(r.stderr.strip().splitlines() or ['pip gave nothing'])[-1]})")
        with tarfile.open(archives[0]) as tar:
            tar.extractall(Path(tmp) / "src", filter="data")
        (top,) = (Path(tmp) / "src").iterdir()
        files = {str(p.relative_to(top)): p.read_text(errors="replace") for p in sorted(top.rglob("*"))
                 if p.is_file() and ".egg-info" not in p.as_posix() and str(p.relative_to(top)) not in lib.exclude}
        if root.exists():
            shutil.rmtree(root)
        commit = commit_files(root / "repo", files, message=f"{lib.label} (sdist)")
    atomic_write_text(done, commit + "\n")
    return root / "repo", commit


def package_dir(lib: Library, repo: Path, commit: str) -> str:
    """The package's directory in the sdist: `lib.package` as given, or under `src/` (the src layout)."""
    files = git(repo, "ls-tree", "-r", "--name-only", commit).split()
    for where in dict.fromkeys([lib.package.rstrip("/"), f"src/{lib.package.rstrip('/')}"]):
        if any(f.startswith(where + "/") and f.endswith(".py") for f in files):
            return where
    raise InputError(f"library {lib.name}: package: no Python package {lib.package!r} in its sdist "
                     f"(looked in {lib.package}/ and src/{lib.package}/)")


def worktree_paths(lib: Library, repo: Path, commit: str) -> list[str]:
    """The worktree's directories that go first on `sys.path`, as an editable install puts them: none in
    the flat layout (the current directory, the worktree, already is), the package's parent otherwise."""
    parent = str(Path(package_dir(lib, repo, commit)).parent)
    return [] if parent == "." else [parent]


def requirements(lib: Library) -> list[str]:
    """What the library's tests need: itself (for its installed metadata), pytest, its test dependencies."""
    return [f"{lib.name}=={lib.version}", f"pytest=={version('pytest')}", *lib.test_requires]


def build_library_env(lib: Library, repo: Path, clean: str, runtime: RuntimeConfig) -> str:
    """The library's environment for `runtime`: a virtual environment (local) or an image (docker)."""
    paths = worktree_paths(lib, repo, clean)
    if runs_in_docker(_probe(lib, repo, clean), runtime):
        from daggerlm.runtime.images import build_env_image

        build_env_image(_probe(lib, repo, clean), requirements(lib), runtime.docker_image, worktree_paths=paths)
    else:
        build_env(runtime.envs_dir, lib.label, requirements(lib), worktree_paths=paths)
    return lib.label


def _probe(lib: Library, repo: Path, commit: str) -> Instance:
    """A stand-in instance that lets the sandbox check out any commit of the library's repository."""
    return Instance(instance_id=f"{lib.name}__probe", repo=f"pypi/{lib.name}", base_commit=commit, patch="",
                    test_patch="", problem_statement="probe", FAIL_TO_PASS=[], PASS_TO_PASS=[], source="mutation",
                    repo_snapshot=str(repo), environment=lib.label)


@dataclass
class SuiteRun:
    status: dict[str, str]
    """Test id -> PASSED / FAILED / ERROR / SKIPPED (swebench's pytest log parser)."""
    log: str
    seconds: float
    timed_out: bool


def run_suite(lib: Library, repo: Path, commit: str, runtime: RuntimeConfig, timeout_s: float) -> SuiteRun:
    """The library's test suite at `commit`, run in the sandbox (a mutant may loop forever: time limit)."""
    runtime = suite_runtime(runtime, timeout_s)
    args = " ".join(["-rA", "-q", "-p", "no:cacheprovider", *lib.pytest_args, lib.tests])
    with open_sandbox(_probe(lib, repo, commit), runtime) as box:
        out = box.run(f"COLUMNS=300 python -m pytest {args}")  # COLUMNS: short summaries untruncated
    status = {t: s for t, s in parse_log_pytest(out["output"], None).items() if "::" in t}  # tests, not messages
    return SuiteRun(status, out["output"], out["extra"]["duration_s"], bool(out["extra"].get("timed_out")))


def suite_timeout(baseline: SuiteRun) -> float:
    """A mutant's suite may take a few times the clean one's time; longer means it hangs."""
    return max(20.0, 5 * baseline.seconds)


def _broken_tests(baseline: SuiteRun, run: SuiteRun) -> list[str]:
    """The tests that passed in `baseline` and do not pass in `run` (missing ones fail: a collection error)."""
    return sorted(t for t, s in baseline.status.items() if s == "PASSED" and run.status.get(t, "FAILED") != "PASSED")


def check_tests_see_the_worktree(lib: Library, repo: Path, clean: str, baseline: SuiteRun,
                                 runtime: RuntimeConfig) -> None:
    """The suite must fail with the package's `__init__.py` raising ImportError (in a throwaway commit);
    one that passes imports a copy of the package from elsewhere, and no mutant could break it."""
    where = package_dir(lib, repo, clean)
    broken = commit_file_change(repo, clean, f"{where}/__init__.py",
                                'raise ImportError("deliberately broken by daggerlm: do its tests import it?")\n',
                                "deliberately broken package")
    run = run_suite(lib, repo, broken, runtime, timeout_s=suite_timeout(baseline))
    if not run.timed_out and not _broken_tests(baseline, run):
        raise InputError(f"library {lib.name}: its test suite passes with the package broken ({where}/__init__.py "
                         "raising ImportError): its tests do not import the worktree's package (a copy installed "
                         "from the sdist, not the worktree?), so no mutation could make a test fail")


def _summary(log: str, test: str) -> str:
    """pytest's one-line reason for a failed test (its short test summary line)."""
    for line in log.splitlines():
        if line.startswith(FAILED) and test in line and " - " in line:
            return line.split(" - ", 1)[1].strip()[:300]
    return ""


def problem_statement(lib: Library, fail_to_pass: list[str], log: str) -> str:
    shown = fail_to_pass[:5]
    more = f"\n... and {len(fail_to_pass) - len(shown)} more" if len(fail_to_pass) > len(shown) else ""
    reason = next((r for r in (_summary(log, t) for t in shown) if r), "")
    lines = [f"Tests of {lib.name} fail", "", f"After a recent change these tests of {lib.name} fail:",
             *[f"- {t}" for t in shown]]
    return "\n".join(lines) + more + (f"\n\nThe first failure says: {reason}" if reason else "") + \
        "\n\nThey passed before. Fix the library so that they pass again (do not change the tests)."


def instance_id(lib: Library, mutation: AstMutation) -> str:
    """The id of the instance a mutation gives, known before it is validated."""
    return f"{lib.name}__mutation-{stable_hash({'library': lib.label, 'mutation': mutation.__dict__})[:10]}"


def validate(lib: Library, repo: Path, clean: str, baseline: SuiteRun, mutation: AstMutation,
             runtime: RuntimeConfig) -> dict:
    """Commit one mutant and run the suite; an instance (as JSON) if it breaks some tests but not all."""
    source = git(repo, "show", f"{clean}:{mutation.path}")
    mutant = commit_file_change(repo, clean, mutation.path, mutation.apply(source),
                                f"{mutation.operator} in {mutation.function}")
    run = run_suite(lib, repo, mutant, runtime, timeout_s=suite_timeout(baseline))
    if run.timed_out:
        return {"valid": False, "reason": "the suite hangs"}
    status, log = run.status, run.log
    fail_to_pass = _broken_tests(baseline, run)
    pass_to_pass = sorted(t for t, s in baseline.status.items() if s == "PASSED" and status.get(t) == "PASSED")
    if not fail_to_pass:
        return {"valid": False, "reason": "no test fails"}
    if not pass_to_pass:
        return {"valid": False, "reason": "every test fails"}
    instance = Instance(
        instance_id=instance_id(lib, mutation), repo=f"pypi/{lib.name}", base_commit=mutant,
        patch=git(repo, "diff", mutant, clean), test_patch="", version=lib.version, source="mutation",
        problem_statement=problem_statement(lib, fail_to_pass, log), FAIL_TO_PASS=fail_to_pass,
        PASS_TO_PASS=pass_to_pass, repo_snapshot=str(repo), environment=lib.label)
    if not grade(instance, instance.patch, runtime)["resolved"]:
        return {"valid": False, "reason": "gold patch does not resolve"}
    if grade(instance, "", runtime)["resolved"]:
        return {"valid": False, "reason": "empty patch resolves"}
    return {"valid": True, "instance": instance.model_dump(mode="json"),
            "mutation": {"path": mutation.path, "function": mutation.function, "operator": mutation.operator}}


def mutation_candidates(lib: Library, repo: Path, clean: str, seed: int) -> list[AstMutation]:
    """All candidates in the package's non-test modules, shuffled by the seed."""
    files = git(repo, "ls-tree", "-r", "--name-only", clean).split()
    tests = lib.tests.rstrip("/") + "/"
    where = package_dir(lib, repo, clean)
    modules = [f for f in files if f.startswith(where + "/") and f.endswith(".py") and not f.startswith(tests)
               and "/tests/" not in f and not Path(f).name.startswith("test_")]
    found = [m for path in modules for m in candidates(path, git(repo, "show", f"{clean}:{path}"))]
    random.Random(f"daggerlm-mutate|{lib.label}|{seed}").shuffle(found)
    return found


def mutate_library(lib: Library, n: int, seed: int, cache: Path, runtime: RuntimeConfig, workers: int = 2,
                   on_progress: Callable[[int, int], None] | None = None,
                   exclude: Collection[str] = ()) -> tuple[list[Instance], dict]:
    """Up to `n` validated instances of `lib` and a report (candidates tried, kept, reasons); none
    whose id is in `exclude` (another split's), so a second split from the same library is disjoint."""
    repo, clean = fetch(lib, cache)
    build_library_env(lib, repo, clean, runtime)
    limit = max(300.0, runtime.timeout_s)
    baseline = run_suite(lib, repo, clean, runtime, timeout_s=limit)
    if baseline.timed_out:
        raise LibrarySkipped(f"{lib.label}: its test suite did not finish in {limit:.0f}s without network "
                             "(a test that waits on a socket or hangs: leave its file out with `exclude`)")
    if not baseline.status:
        raise LibrarySkipped(f"{lib.label}: its test suite ran no tests ({lib.tests}): {baseline.log.strip()[-200:]}")
    broken = sorted(t for t, s in baseline.status.items() if s not in FINE)
    if broken:
        raise LibrarySkipped(f"{lib.label}: {len(broken)} tests fail before any mutation, e.g. {broken[0]}")
    check_tests_see_the_worktree(lib, repo, clean, baseline, runtime)
    store = ResultStore(library_dir(lib, cache) / "validated")
    pending = [m for m in mutation_candidates(lib, repo, clean, seed) if instance_id(lib, m) not in exclude]
    tried, kept, reasons, first = 0, [], {}, []
    total = len(pending)
    # outcomes of a suite that did not see the worktree (before worktree paths) are not reused
    paths = {"worktree_paths": p} if (p := worktree_paths(lib, repo, clean)) else {}

    def outcome(m: AstMutation) -> dict:
        key = stable_hash({"mutation": m.__dict__, "clean": clean, "baseline": baseline.status, **paths})
        name = stable_hash(m.__dict__)
        if (cached := store.get(name, key)) is None:
            cached = validate(lib, repo, clean, baseline, m, runtime)
            store.put(name, key, cached)
        return cached

    with ThreadPoolExecutor(max(1, workers)) as pool:
        while pending and len(kept) < n:
            batch, pending = pending[: 2 * workers], pending[2 * workers:]
            for result in pool.map(outcome, batch):  # in candidate order: the same seed keeps the same ones
                tried += 1
                if result["valid"] and len(kept) < n:
                    kept.append(Instance.model_validate(result["instance"]))
                elif not result["valid"]:
                    reasons[result["reason"]] = reasons.get(result["reason"], 0) + 1
                if len(first) < EARLY_STOP:
                    first.append(None if result["valid"] else result["reason"])
            if on_progress:
                on_progress(len(kept), tried)
            if len(first) == EARLY_STOP and len(set(first)) == 1 and first[0] is not None:
                raise InputError(f"library {lib.name}: its first {EARLY_STOP} mutations were all rejected: {first[0]} "
                                 f"(stopped after {tried} of {total} candidates)")
    report = {"library": lib.label, "clean_commit": clean, "tests": len(baseline.status), "tried": tried,
              "kept": len(kept), "rejected": reasons}
    return kept, report

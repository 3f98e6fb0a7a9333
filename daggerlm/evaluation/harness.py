"""The official SWE-bench harness: Docker specs for instances, and `run_evaluation` on them.

swebench ≥ 5 runs a record that carries `image`, `eval_script`, `log_parser` and `eval_type`.
Mutation instances get images built locally (`runtime.images`) and an eval script that runs the
tests our local grading runs, with the same log parser, so the two verdicts can be compared one by
one. SWE-bench / SWE-Gym records get the official image name and an eval script in the shape of
SWE-bench's own (conda env `testbed`, reset the test files, apply the test patch, run the tests).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml
from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT
from swebench.harness.log_parsers import PARSER_REGISTRY

from daggerlm.errors import InputError
from daggerlm.evaluation.grading import patched_files, test_command
from daggerlm.instances.schema import Instance
from daggerlm.io import atomic_write_jsonl
from daggerlm.runtime.conda import ACTIVATE, OFFICIAL_SOURCES
from daggerlm.runtime.images import OFFICIAL_IMAGES, official_image_name

REPOS = Path(__file__).with_name("swebench_repos.yaml")
TESTBED = "/testbed"
HEREDOC = "EOF_114329324912"  # SWE-bench's delimiter for the test patch
NON_TEST_SUFFIXES = (".json", ".png", ".csv", ".txt", ".md", ".jpg", ".jpeg", ".pkl", ".yml", ".yaml", ".toml")
DIRECTIVES = ("paths", "django_modules", "mypy_cases")  # how a test command names the tests (see the YAML)


@cache
def repo_specs(path: Path = REPOS) -> dict[str, dict]:
    specs = yaml.safe_load(path.read_text())
    for repo, spec in specs.items():
        if spec.get("log_parser") not in PARSER_REGISTRY:
            raise InputError(f"{path}: {repo}: log_parser {spec.get('log_parser')!r} is not one of swebench's parsers")
        if spec.get("images", "swebench") not in OFFICIAL_IMAGES:
            raise InputError(f"{path}: {repo}: images {spec['images']!r} is not one of {', '.join(OFFICIAL_IMAGES)}")
        if spec.get("directives", "paths") not in DIRECTIVES:
            raise InputError(f"{path}: {repo}: directives {spec['directives']!r} is not one of {', '.join(DIRECTIVES)}")
    return specs


def official_eval_script(base_commit: str, test_patch: str, test_cmd: str, setup: list[str] = (),
                install: str | None = None) -> str:
    """An eval script in SWE-bench's shape: the test files reset and the test patch applied, the tests
    run between the markers swebench's grading reads, the test files reset again."""
    test_files = " ".join(patched_files(test_patch))
    reset = [f"git checkout {base_commit} {test_files}"] if test_files else []
    lines = ["#!/bin/bash", "set -uxo pipefail", *setup, f"cd {TESTBED}",
             f"git config --global --add safe.directory {TESTBED}", "git status", "git show --stat",
             f"git -c core.fileMode=false diff {base_commit}", *([install] if install else []), *reset]
    if test_patch.strip():
        lines.append(f"git apply -v - <<'{HEREDOC}'\n{test_patch.rstrip(chr(10))}\n{HEREDOC}")
    lines += [f": '{START_TEST_OUTPUT}'", test_cmd, f": '{END_TEST_OUTPUT}'", *reset]
    return "\n".join(lines) + "\n"


def _directives(test_patch: str, style: str) -> list[str]:
    """What the test command is given: the test files, as paths or (django) modules, or (mypy, whose
    cases live in .test data files collected by mypy's own plugin) a -k expression over the cases
    the test patch names, as SWE-Gym's harness builds it (no case: `-k ''`, every test)."""
    if style == "mypy_cases":
        cases = dict.fromkeys(re.findall(r"\[case ([^\]]+)\]", test_patch))
        return ["-k", shlex.quote(" or ".join(cases))]
    files = [f for f in patched_files(test_patch) if not f.endswith(NON_TEST_SUFFIXES)]
    if style == "django_modules":
        return [re.sub(r"\.py$", "", f.removeprefix("tests/")).replace("/", ".") for f in files]
    return files


def repo_spec(instance: Instance) -> dict:
    """The spec of a SWE-bench / SWE-Gym record's repository; one line naming the record if none."""
    spec = repo_specs().get(instance.repo)
    if spec is None:
        raise InputError(f"instance {instance.instance_id}: repo {instance.repo!r} is not in {REPOS} "
                         f"(known: {', '.join(repo_specs())})")
    return spec


def require_repo_specs(instances: list[Instance]) -> None:
    """Refuse a batch before anything is built for it: every official record's repository has a spec."""
    for instance in instances:
        if instance.source in OFFICIAL_SOURCES:
            repo_spec(instance)


def swebench_spec(instance: Instance, namespace: str | None = None) -> dict:
    """What a SWE-bench / SWE-Gym record needs to run in its official image (nothing is run here). The
    image is the one published for the repository's dataset (its `images`), under `namespace` if given."""
    spec = repo_spec(instance)
    test_cmd = " ".join([spec["test_cmd"], *_directives(instance.test_patch, spec.get("directives", "paths"))])
    conda = list(ACTIVATE)  # the agent's commands run with the same activation (`runtime.conda`)
    return {"image": official_image_name(instance.instance_id, spec.get("images", "swebench"), namespace),
            "eval_script": official_eval_script(instance.base_commit, instance.test_patch, test_cmd,
                                       setup=[*conda, *spec.get("pre", [])],
                                       install=spec.get("install")),
            "log_parser": spec["log_parser"], "eval_type": "pass_and_fail"}


def mutation_spec(instance: Instance, image: str) -> dict:
    """A locally built instance's spec: the test command and log parser of our own grading."""
    return {"image": image, "eval_script": official_eval_script(instance.base_commit, instance.test_patch,
                                                       test_command(instance)),
            "log_parser": "parse_log_pytest", "eval_type": "pass_and_fail"}


def with_docker_spec(instance: Instance, namespace: str | None = None) -> Instance:
    """`instance` with what the harness needs: official images for SWE-bench / SWE-Gym records (by
    name), locally built ones for the others (their environment's image must exist)."""
    if instance.source in OFFICIAL_SOURCES:
        spec = swebench_spec(instance, namespace)
    else:
        from daggerlm.runtime.images import build_instance_image

        spec = mutation_spec(instance, build_instance_image(instance))
    return instance.model_copy(update=spec)


def run_official(instances: list[Instance], patches: dict[str, str], run_id: str, workdir: Path,
                 model: str = "daggerlm", max_workers: int = 2, timeout_s: int = 1800) -> dict:
    """`python -m swebench.harness.run_evaluation` on `patches` (instance id -> patch; "" = empty) in
    `workdir` (its logs go to `workdir/logs/run_evaluation/`); the harness's final report."""
    lacking = [i.instance_id for i in instances if not (i.image and i.eval_script and i.log_parser)]
    if lacking:
        raise InputError(f"instance {lacking[0]}: no image / eval_script / log_parser for the harness "
                         "(`daggerlm docker build-instances` adds them)")
    workdir = Path(workdir).resolve()
    dataset = atomic_write_jsonl(workdir / f"{run_id}.instances.jsonl",
                                 (i.model_dump(mode="json", exclude_none=True) for i in instances))
    predictions = atomic_write_jsonl(workdir / f"{run_id}.predictions.jsonl", (
        {"instance_id": i.instance_id, "model_name_or_path": model, "model_patch": patches.get(i.instance_id, "")}
        for i in instances))
    r = subprocess.run([sys.executable, "-m", "swebench.harness.run_evaluation", "-d", str(dataset),
                        "-p", str(predictions), "-id", run_id, "--max_workers", str(max_workers),
                        "-t", str(timeout_s), "--report_dir", str(workdir)],
                       cwd=workdir, capture_output=True, text=True)
    report = workdir / f"{model}.{run_id}.json"
    if r.returncode != 0 or not report.is_file():
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"swebench.harness.run_evaluation failed (exit {r.returncode}): {tail[0]}")
    return json.loads(report.read_text())

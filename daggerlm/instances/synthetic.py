"""The synthetic family: tiny Python packages with exactly one injected bug.

Regular on purpose, so a few-million-parameter model trained from scratch can learn it: every
repository is `<pkg>/<module>.py` files of one-line functions and one test per function in
`tests/test_<module>.py`; the expert fixes a bug in five turns (run tests, find the function,
rewrite its body line, rerun tests, submit). The test patch adds a second, hidden test of the buggy
function, so hard-coding the visible expected value does not resolve the instance.

Splits are disjoint by construction: an instance belongs to `eval` iff the hash of its content
signature says so, whatever seed produced it.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from daggerlm.instances.mutations import Mutation, mutations
from daggerlm.instances.schema import Instance
from daggerlm.instances.templates import DOMAINS, PACKAGES, FunctionTemplate, draw_args
from daggerlm.instances.git import commit_files, diff_against

Split = Literal["train", "eval"]
EVAL_SHARE = 0.2
STATEMENTS = [
    "{name} returns the wrong result\n\nCalling `{call}` returns `{got}`, but it should return `{want}`.",
    "Bug in {name}\n\n`{call}` gives `{got}`; the expected result is `{want}`.",
    "{name} is broken\n\nI expected `{call}` to return `{want}`, but it returned `{got}`.",
]


@dataclass
class BuggyFunction:
    template: FunctionTemplate
    mutation: Mutation
    visible_args: tuple
    hidden_args: tuple


def _call(fn: FunctionTemplate, body: str, args: tuple) -> object:
    namespace: dict = {}
    exec(f"{fn.signature}\n    return {body}\n", namespace)
    return namespace[fn.name](*args)


def _safe_call(fn: FunctionTemplate, body: str, args: tuple) -> tuple[bool, object]:
    try:
        return True, _call(fn, body, args)
    except Exception:
        return False, None


def _distinguishing_args(fn: FunctionTemplate, bug: str, rng: random.Random, tries: int = 40) -> tuple | None:
    """Arguments on which the correct and the buggy body both return, with different values."""
    for _ in range(tries):
        args = draw_args(fn, rng)
        ok_good, good = _safe_call(fn, fn.body, args)
        ok_bad, bad = _safe_call(fn, bug, args)
        if ok_good and ok_bad and good != bad and type(good) is type(bad):
            return args
    return None


def _pick_bug(fn: FunctionTemplate, rng: random.Random) -> BuggyFunction | None:
    candidates = mutations(fn.body)
    rng.shuffle(candidates)
    kind = rng.choice(sorted({m.kind for m in candidates}))  # balance kinds, not mutation sites
    candidates.sort(key=lambda m: m.kind != kind)
    for mutation in candidates:
        visible = _distinguishing_args(fn, mutation.source, rng)
        hidden = _distinguishing_args(fn, mutation.source, rng)
        if visible is not None and hidden is not None and visible != hidden:
            return BuggyFunction(fn, mutation, visible, hidden)
    return None


def _render_call(fn: FunctionTemplate, args: tuple) -> str:
    return f"{fn.name}({', '.join(repr(a) for a in args)})"


def _module_source(module: str, functions: list[FunctionTemplate], bug: BuggyFunction | None) -> str:
    parts = [f'"""{module.capitalize()} helpers."""\n']
    for fn in functions:
        body = bug.mutation.source if bug and bug.template is fn else fn.body
        parts.append(f"\n\n{fn.signature}\n    return {body}\n")
    return "".join(parts)


def _test(fn: FunctionTemplate, args: tuple, suffix: str = "") -> str:
    return f"\n\ndef test_{fn.name}{suffix}():\n    assert {_render_call(fn, args)} == {_call(fn, fn.body, args)!r}\n"


def _test_source(pkg: str, module: str, functions: list[FunctionTemplate], args: dict[str, tuple]) -> str:
    names = ", ".join(fn.name for fn in functions)
    return f"from {pkg}.{module} import {names}\n" + "".join(_test(fn, args[fn.name]) for fn in functions)


def _signature(pkg: str, modules: dict[str, list[FunctionTemplate]], bug: BuggyFunction) -> str:
    layout = ";".join(f"{m}:{','.join(f.name for f in fns)}" for m, fns in modules.items())
    return f"{pkg}|{layout}|{bug.template.name}|{bug.mutation.source}|{bug.visible_args}|{bug.hidden_args}"


def split_of(signature: str) -> Split:
    bucket = int(hashlib.sha256(signature.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "eval" if bucket < EVAL_SHARE else "train"


def _draw(rng: random.Random, split: Split, modules_per_repo: int, functions_per_module: int) -> Iterator[Instance]:
    """Draw one candidate instance (or nothing: the bug cannot be observed, or it belongs to the other split)."""
    pkg = rng.choice(PACKAGES)
    domains = rng.sample(sorted(DOMAINS), modules_per_repo)
    modules = {d: rng.sample(DOMAINS[d], min(functions_per_module, len(DOMAINS[d]))) for d in domains}
    bug_module = rng.choice(domains)
    bug = _pick_bug(rng.choice(modules[bug_module]), rng)
    if bug is None:
        return
    signature = _signature(pkg, modules, bug)
    if split_of(signature) == split:
        yield _build(pkg, modules, bug_module, bug, rng, signature)


def _build(pkg: str, modules: dict[str, list[FunctionTemplate]], bug_module: str, bug: BuggyFunction,
           rng: random.Random, signature: str) -> Instance:
    args = {fn.name: draw_args(fn, rng) for fns in modules.values() for fn in fns}
    args[bug.template.name] = bug.visible_args
    files = {".gitignore": "__pycache__/\n.pytest_cache/\n", f"{pkg}/__init__.py": f'"""{pkg}: small helpers."""\n'}
    for module, fns in modules.items():
        files[f"{pkg}/{module}.py"] = _module_source(module, fns, bug)
        files[f"tests/test_{module}.py"] = _test_source(pkg, module, fns, args)
    test_file = f"tests/test_{bug_module}.py"
    fixed = {f"{pkg}/{bug_module}.py": _module_source(bug_module, modules[bug_module], None)}
    with_hidden = {test_file: files[test_file] + _test(bug.template, bug.hidden_args, "_more")}
    with tempfile.TemporaryDirectory(prefix="daggerlm-synth-") as tmp:
        repo = Path(tmp)
        base_commit = commit_files(repo, files)
        patch = diff_against(repo, base_commit, fixed)
        test_patch = diff_against(repo, base_commit, with_hidden)
    fn = bug.template
    statement = rng.choice(STATEMENTS).format(
        name=fn.name, call=_render_call(fn, bug.visible_args), got=repr(_call(fn, bug.mutation.source, bug.visible_args)),
        want=repr(_call(fn, fn.body, bug.visible_args)))
    all_tests = [f"tests/test_{m}.py::test_{f.name}" for m, fns in modules.items() for f in fns]
    fail_to_pass = [f"{test_file}::test_{fn.name}", f"{test_file}::test_{fn.name}_more"]
    digest = hashlib.sha256(signature.encode()).hexdigest()[:10]
    return Instance(
        instance_id=f"synthetic__{pkg}-{digest}", repo=f"synthetic/{pkg}", base_commit=base_commit, patch=patch,
        test_patch=test_patch, problem_statement=statement, FAIL_TO_PASS=fail_to_pass,
        PASS_TO_PASS=[t for t in all_tests if t not in fail_to_pass], version="1", source="synthetic",
        repo_files=files, bug_kind=bug.mutation.kind, split=split_of(signature),
    )


def generate(n: int, split: Split, seed: int, modules_per_repo: int = 2, functions_per_module: int = 3,
             max_draws: int | None = None) -> list[Instance]:
    """`n` distinct instances of `split`, deterministic for `seed`."""
    rng = random.Random(f"daggerlm-synthetic|{seed}|{split}")
    out: dict[str, Instance] = {}
    max_draws = max_draws or 200 * n + 1000
    for _ in range(max_draws):
        if len(out) == n:
            break
        for inst in _draw(rng, split, modules_per_repo, functions_per_module):
            if inst.instance_id not in out:
                out[inst.instance_id] = inst
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} distinct {split} instances after {max_draws} draws (seed {seed})")
    return list(out.values())

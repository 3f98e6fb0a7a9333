"""The pipeline, declared once. `STAGES` says, for each stage: the function, the params it reads,
its deps and outs (from the data layout), whether it runs once or per iteration, and whether it fans
its items (episodes) out as Prefect tasks. Everything else derives from it: the in-process loop
(`loop.run_dagger`), the stage command (`daggerlm stage NAME -i K`), the Prefect flow's order and
`dvc.yaml` (`daggerlm pipeline write`); a test records the params each stage reads while the tiny
pipeline runs and fails when one is missing from that stage's `reads`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from daggerlm.agent.runner import ItemRunner
from daggerlm.config import Params
from daggerlm.dagger import stages
from daggerlm.dagger.layout import Layout
from daggerlm.errors import InputError
from daggerlm.io import DVC_IGNORED, atomic_write_text

Paths = Callable[[Layout, int], list[Path]]


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., Any]
    """`run(params)` for a stage that runs once, `run(params, k)` per iteration (`runner=` if it fans out)."""
    reads: tuple[str, ...]
    """The params it reads (dotted; a section means all of it): DVC reruns the stage when one changes."""
    deps: Paths
    """The same number of paths in every iteration (DVC's `foreach` templates take scalars only)."""
    outs: Paths
    per_iteration: bool = True
    fans_out: bool = False
    """Runs its items (episodes, trajectories) as Prefect tasks (`daggerlm stage --prefect`)."""
    unaffected: tuple[str, ...] = ()
    """Params it reads that cannot change its outputs (where to cache, how many threads)."""
    metrics: Paths = field(default=lambda lay, k: [])
    plots: Paths = field(default=lambda lay, k: [])
    in_git: bool = False
    """Its outs are committed with dvc.yaml (`cache: false`), not kept in DVC's cache."""
    param_deps: Callable[[Params], list[Path]] = field(default=lambda p: [])
    """Deps outside the data layout that params name (init-model: a local base model; instances: a
    `file` source, a user's libraries file). A function of the params alone, never of what is on
    disk, so dvc.yaml stays a function of params.yaml."""


PARAMS_FILE = "params.yaml"
"""The params file a user writes (DVC's default); stage `params` resolves it for every other stage."""

STAGES: tuple[Stage, ...] = (
    Stage("params", stages.stage_params, per_iteration=False, reads=(), param_deps=lambda p: [Path(PARAMS_FILE)],
          in_git=True,
          deps=lambda lay, k: [], outs=lambda lay, k: [lay.params()]),
    Stage("instances", stages.stage_instances, per_iteration=False, param_deps=stages.instance_deps,
          reads=("instances", "runtime"),  # runtime: where a mutation source runs the libraries' suites
          deps=lambda lay, k: [], outs=lambda lay, k: [lay.root / "instances"]),
    Stage("init-model", stages.stage_init_model, per_iteration=False,
          reads=("seed", "student.model", "student.build_tiny", "student.tiny", "student.device",
                 "instances.modules_per_repo", "instances.functions_per_module", "runtime", "agent"),
          unaffected=("dagger.concurrency",), param_deps=stages.base_deps,
          deps=lambda lay, k: [], outs=lambda lay, k: [lay.checkpoint(0)]),
    Stage("evaluate-base", stages.stage_evaluate_base, per_iteration=False, fans_out=True,
          reads=("seed", "evaluation", "student", "teacher", "dagger.max_failed_share", "agent", "runtime"),
          deps=lambda lay, k: [lay.instances("eval"), lay.checkpoint(0)],
          outs=lambda lay, k: [lay.base_eval() / "results", lay.base_eval() / "predictions.jsonl"],
          metrics=lambda lay, k: [lay.base_eval() / "metrics.json"]),
    Stage("rollout", stages.stage_rollout, fans_out=True,
          reads=("seed", "dagger.beta", "dagger.rollin_turns", "dagger.concurrency", "dagger.episodes_per_iteration",
                 "dagger.max_failed_share", "student", "teacher", "agent", "runtime", "train.objective.curriculum"),
          unaffected=("dagger.label_cache",),
          # the length curriculum's budget comes from evaluate k−1 (iteration 0: a stand-in, the count must not vary)
          deps=lambda lay, k: [lay.instances("train"), lay.checkpoint(k),
                               lay.curriculum(k - 1) if k else lay.instances("eval")],
          outs=lambda lay, k: [lay.rollouts(k)]),
    Stage("label", stages.stage_label, fans_out=True,
          # a served teacher scores each state as training renders it: the objective, the student's tokenizer and window
          reads=("dagger.max_failed_share", "teacher", "train.objective.prefix", "train.objective.targets",
                 "train.objective.alpha", "train.objective.k", "student.model", "student.build_tiny",
                 "student.keep_turns", "student.keep_observations"),
          unaffected=("dagger.concurrency", "dagger.label_cache"),
          deps=lambda lay, k: [lay.instances("train"), lay.rollouts(k), lay.checkpoint(0)],
          outs=lambda lay, k: [lay.labels(k)]),
    Stage("aggregate", stages.stage_aggregate, reads=("seed", "dagger.labels_per_iteration"),
          deps=lambda lay, k: [lay.labels(k), lay.aggregated(k - 1) if k else lay.instances("train")],
          outs=lambda lay, k: [lay.aggregated(k)]),
    Stage("train", stages.stage_train,
          reads=("seed", "train", "student", "teacher.kind", "teacher.model", "teacher.endpoint.logprobs"),
          deps=lambda lay, k: [lay.aggregated(k), lay.checkpoint(k), lay.checkpoint(0)],
          outs=lambda lay, k: [lay.checkpoint(k + 1)]),
    Stage("evaluate", stages.stage_evaluate, fans_out=True,
          reads=("seed", "evaluation", "student", "teacher", "dagger.max_failed_share", "agent", "runtime",
                 "train.objective.curriculum"),
          deps=lambda lay, k: [lay.instances("eval"), lay.checkpoint(k + 1),
                               lay.curriculum(k - 1) if k else lay.checkpoint(0)],
          outs=lambda lay, k: [lay.eval(k) / "results", lay.eval(k) / "predictions.jsonl", lay.curriculum(k)],
          metrics=lambda lay, k: [lay.eval(k) / "metrics.json"]),
    Stage("report", stages.stage_report, reads=("dagger.iterations",), per_iteration=False,
          deps=lambda lay, k: [lay.root / d for d in ("rollouts", "labels", "aggregated", "eval", "checkpoints")],
          outs=lambda lay, k: [lay.inspector()],
          metrics=lambda lay, k: [lay.report() / "summary.json"], plots=lambda lay, k: [lay.report() / "iterations.json"]),
)
BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    if name not in BY_NAME:
        raise InputError(f"stage {name!r}: expected one of {', '.join(BY_NAME)}")
    return BY_NAME[name]


def order(first: int, last: int, with_shared: bool = True) -> list[tuple[Stage, int | None]]:
    """The stages of iterations first..last−1, in pipeline order: once-stages before and after them."""
    before = [(s, None) for s in STAGES if not s.per_iteration and s.name != "report"] if with_shared else []
    per_iteration = [(s, k) for k in range(first, last) for s in STAGES if s.per_iteration]
    return before + per_iteration + [(BY_NAME["report"], None)]


def dvc_name(s: Stage, k: int | None) -> str:
    return s.name if k is None else f"{s.name}@{k}"


def run_stage(p: Params, name: str, k: int | None = None, runner: ItemRunner | None = None) -> Any:
    """Run one stage: the one way every entry point (loop, CLI, flow, DVC) runs a stage."""
    s = stage(name)
    if s.per_iteration != (k is not None):
        raise InputError(f"stage {name}: " + ("give the iteration (-i K)" if s.per_iteration else "takes no iteration"))
    if s.per_iteration and not 0 <= k < p.dagger.iterations:
        raise InputError(f"stage {name}: iteration {k} is not in 0..{p.dagger.iterations - 1} (dagger.iterations)")
    args = (p,) if k is None else (p, k)
    return s.run(*args, runner=runner) if s.fans_out else s.run(*args)


def dvc_yaml(p: Params) -> str:
    """dvc.yaml for these params: every stage of every iteration, paths under `data`, each stage's
    params its declared reads, from the resolved params (stage `params`) it also runs on. Regenerate it
    whenever `dagger.iterations`, `data`, `student.model` or `student.build_tiny` change."""
    lay = stages.layout(p)
    out: dict[str, Any] = {}
    for s in STAGES:
        iterations = range(p.dagger.iterations) if s.per_iteration else [0]
        kinds = {kind: [[str(x) for x in getattr(s, kind)(lay, k)] for k in iterations]
                 for kind in ("deps", "outs", "metrics", "plots")}
        kinds["deps"] = [paths + [str(x) for x in s.param_deps(p)] for paths in kinds["deps"]]
        for kind, per_k in kinds.items():
            assert len({len(paths) for paths in per_k}) == 1, f"{s.name}.{kind}: not the same count each iteration"
        resolved = str(lay.params())
        source = "" if s.name == "params" else f" --params {resolved}"
        prefect = " --prefect" if s.fans_out else ""
        if not s.per_iteration:
            out[s.name] = {"cmd": f"daggerlm stage {s.name}{source}{prefect}",
                           **_entry(s, {kind: v[0] for kind, v in kinds.items()}, resolved)}
            continue
        items = {str(k): {f"{kind}{i}": path for kind, v in kinds.items() for i, path in enumerate(v[k])}
                 for k in iterations}
        template = {kind: [f"${{item.{kind}{i}}}" for i in range(len(v[0]))] for kind, v in kinds.items()}
        out[s.name] = {"foreach": items, "do": {
            "cmd": f"daggerlm stage {s.name} -i ${{key}}{source}{prefect}",
            **_entry(s, template, resolved)}}
    plots = [{str(lay.report() / "iterations.json"): {"x": "iteration", "y": [
        "resolve_rate", "beta", "calls_per_state", "teacher_calls", "labels_total"]}}]
    header = ("# Generated from daggerlm/dagger/pipeline.py (STAGES) by `daggerlm pipeline write`: do not edit.\n"
              f"# {p.dagger.iterations} iterations under {p.data}/: `dvc repro` runs every stage, each one only when\n"
              "# its deps or the params it reads changed.\n")
    return header + yaml.safe_dump({"stages": out, "plots": plots}, sort_keys=False, width=120)


def write_pipeline(p: Params, dvc_file: str | Path = "dvc.yaml") -> Path:
    """`dvc_file` for `p` and the resolved params it reads (each written only when it changed), and the
    lines of `.dvcignore` beside it that keep the runs' wall-clock seconds out of DVC's hashes (`io.DVC_IGNORED`)."""
    dvc_file = Path(dvc_file)
    for path, text in ((dvc_file, dvc_yaml(p)), (dvc_file.parent / stages.layout(p).params(), stages.resolved_params(p))):
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)
    ignore = dvc_file.with_name(".dvcignore")
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    if missing := [pattern for pattern in DVC_IGNORED if pattern not in lines]:
        note = "# wall-clock seconds: not data, they differ run to run"
        atomic_write_text(ignore, "\n".join([*lines, note, *missing]) + "\n")
    return dvc_file


def _entry(s: Stage, paths: dict[str, list[str]], params_file: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if paths["deps"]:
        entry["deps"] = paths["deps"]
    if s.reads:
        entry["params"] = [{params_file: list(s.reads)}]
    if paths["outs"]:
        entry["outs"] = [{path: {"cache": False}} for path in paths["outs"]] if s.in_git else paths["outs"]
    for kind in ("metrics", "plots"):  # cached like every out: a clone's `dvc pull` brings them (git ignores data/)
        if paths[kind]:
            entry[kind] = list(paths[kind])
    return entry

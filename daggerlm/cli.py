"""The `daggerlm` command line: the loop, one stage command (what dvc.yaml calls), and tools.

    daggerlm run                        # every stage of every iteration of params.yaml, in one process
    daggerlm stage NAME [-i K] [--prefect]   # one stage (instances, init-model, rollout, ..., report)
    daggerlm iterations set N           # params.yaml's dagger.iterations, and dvc.yaml regenerated
    daggerlm oracle --seed 7            # the oracle on a synthetic eval split (a sanity check)
    daggerlm instances synth|validate|show ...
    daggerlm grade --instances FILE --predictions predictions.jsonl --out reports.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from daggerlm.errors import INFRASTRUCTURE_EXIT, INPUT_ERROR_EXIT, InfrastructureError, InputError
from daggerlm.io import parse_overrides

app = typer.Typer(add_completion=False, no_args_is_help=True, help="DAgger for multi-turn LLM SWE agents.")
instances_app = typer.Typer(no_args_is_help=True, help="Create, validate and inspect task instances.")
app.add_typer(instances_app, name="instances")
console = Console(stderr=True)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params.yaml to read (absent file: defaults).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a param: section.key=value (YAML value).")]
SplitOpt = Annotated[str, typer.Option("--split", help="Split of a hub dataset name (SWE-Gym/SWE-Gym has only 'train'); "
                                                        "files ignore it.")]


def _params(path: Path, pairs: list[str] | None):
    """params.yaml (when the default file is absent: the defaults) with --set overrides."""
    from daggerlm.config import load_params

    return load_params(path if path.exists() or str(path) != "params.yaml" else None, parse_overrides(pairs))


@instances_app.command("synth")
def instances_synth(
    out: Annotated[Path, typer.Option(help="JSONL file to write.")],
    n: Annotated[int, typer.Option(min=1)] = 50,
    split: Annotated[str, typer.Option(help="train or eval")] = "eval",
    seed: int = 0,
) -> None:
    """Generate synthetic instances (deterministic for a seed; splits are disjoint)."""
    from daggerlm.instances import write_instances
    from daggerlm.instances.synthetic import generate

    if split not in ("train", "eval"):
        raise InputError(f"--split {split!r}: expected 'train' or 'eval'")
    write_instances(out, generate(n, split, seed))  # type: ignore[arg-type]
    console.print(f"wrote {n} {split} instances (seed {seed}) to {out}")


docker_app = typer.Typer(no_args_is_help=True, help="The Docker runtime's images.")
app.add_typer(docker_app, name="docker")


@docker_app.command("build-base")
def docker_build_base(tag: str = "daggerlm/base:bookworm", suite: str = "bookworm",
                      mirror: str = "http://deb.debian.org/debian") -> None:
    """Build the base image locally: debootstrap minbase + python3, pytest, git; docker import."""
    from daggerlm.runtime.docker import build_base_image

    console.print(f"{build_base_image(tag, suite, mirror)}: ready")


LibCacheOpt = Annotated[Path, typer.Option(help="Library sources, clean commits and validation results.")]


@docker_app.command("build-env")
def docker_build_env(
    library: Annotated[list[str], typer.Option(help="Library of libraries.yaml (repeatable).")],
    cache: LibCacheOpt = Path(".daggerlm/libraries"),
    base: str = "daggerlm/base:bookworm",
) -> None:
    """Build a library's environment image: its test dependencies, its code at /testbed."""
    from daggerlm.config import RuntimeConfig
    from daggerlm.instances.library_bugs import LIBRARIES, build_library_env, fetch, load_libraries
    from daggerlm.runtime.docker import env_image_tag

    known = load_libraries()
    for name in library:
        if name not in known:
            raise InputError(f"--library {name!r}: not in {LIBRARIES} (known: {', '.join(known)})")
        repo, clean = fetch(known[name], cache)
        build_library_env(known[name], repo, clean, RuntimeConfig(kind="docker", docker_image=base))
        console.print(f"{name}: image {env_image_tag(known[name].label)} ready")


@docker_app.command("build-instances")
def docker_build_instances(
    instances: Annotated[str, typer.Argument(help="Instances file (.jsonl / .json / .parquet) or dataset name.")],
    out: Annotated[Path, typer.Option(help="JSONL file to write: the instances with their Docker spec.")],
    namespace: Annotated[Optional[str], typer.Option(
        help="Registry namespace of the official images (default: each dataset's own, swebench for SWE-bench, "
             "xingyaoww for SWE-Gym; see runtime/images.py OFFICIAL_IMAGES).")] = None,
    split: SplitOpt = "test",
) -> None:
    """Add what `swebench.harness.run_evaluation` runs by (image, eval_script, log_parser, eval_type):
    official image names for SWE-bench / SWE-Gym records, locally built images for the others."""
    from rich.progress import track

    from daggerlm.evaluation.harness import require_repo_specs, with_docker_spec
    from daggerlm.instances import load_instances, write_instances

    items = load_instances(instances, split)
    require_repo_specs(items)
    write_instances(out, [with_docker_spec(i, namespace) for i in track(items, "instances", console=console)])
    console.print(f"wrote {len(items)} instances to {out}; run them with "
                  f"`python -m swebench.harness.run_evaluation -d {out} -p PREDICTIONS.jsonl -id RUN`")


@instances_app.command("mutate")
def instances_mutate(
    out: Annotated[Path, typer.Option(help="JSONL file to write.")],
    library: Annotated[Optional[list[str]], typer.Option(help="Library of libraries.yaml (repeatable; default all).")] = None,
    n: Annotated[int, typer.Option(min=1, help="Instances per library.")] = 30,
    seed: int = 0,
    workers: Annotated[int, typer.Option(min=1, help="Candidates validated in parallel.")] = 2,
    cache: LibCacheOpt = Path(".daggerlm/libraries"),
    libraries: Annotated[Optional[Path], typer.Option(help="Library config (versions, tests, pytest args).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Procedural bugs in real libraries, validated by their own tests (resumable; same seed, same instances)."""
    from rich.progress import Progress

    from daggerlm.instances import write_instances
    from daggerlm.instances.library_bugs import LIBRARIES, LibrarySkipped, load_libraries, mutate_library
    from daggerlm.io import atomic_write_json

    known = load_libraries(libraries or LIBRARIES)
    chosen = library or list(known)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise InputError(f"--library {unknown[0]!r}: not in {libraries or LIBRARIES} (known: {', '.join(known)})")
    runtime = _params(params, set_).runtime
    found, reports = [], []
    with Progress(console=console) as progress:
        for name in chosen:
            bar = progress.add_task(name, total=n)
            try:
                items, report = mutate_library(known[name], n, seed, cache, runtime, workers,
                                               on_progress=lambda kept, tried: progress.update(bar, completed=kept))
            except LibrarySkipped as e:
                console.print(f"[yellow]skipped[/yellow] {e}")
                reports.append({"library": name, "skipped": str(e)})
                continue
            found += items
            reports.append(report)
    write_instances(out, found)
    atomic_write_json(out.with_suffix(".report.json"), reports)
    for r in reports:
        console.print(r)
    console.print(f"wrote {len(found)} instances to {out} (report: {out.with_suffix('.report.json')})")
    if not found:
        raise typer.Exit(1)


@instances_app.command("validate")
def instances_validate(spec: str, split: SplitOpt = "test") -> None:
    """Load and validate instances; print what they hold."""
    from daggerlm.instances import load_instances

    items = load_instances(spec, split)
    sources = Counter(i.source for i in items)
    runnable = sum(i.runnable_locally for i in items)
    print(json.dumps({"instances": len(items), "sources": sources, "runnable_locally": runnable}))


@instances_app.command("show")
def instances_show(spec: str, index: int = 0, split: SplitOpt = "test") -> None:
    """Render an instance into the agent's first two messages."""
    from daggerlm.agent.scaffold import first_messages
    from daggerlm.instances import load_instances

    items = load_instances(spec, split)
    if not 0 <= index < len(items):
        raise InputError(f"--index {index}: {spec} holds {len(items)} instances")
    for m in first_messages(items[index]):
        console.rule(m["role"])
        print(m["content"])


def _metrics_table(title: str, metrics: dict) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if key != "format":
            table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    return table




def _print_stats(title: str, stats: dict) -> None:
    Console().print(_metrics_table(title, stats))


@app.command("stage")
def stage_cmd(
    name: Annotated[str, typer.Argument(help="A stage of daggerlm/dagger/pipeline.py: instances, init-model, rollout, "
                                             "label, aggregate, train, evaluate, report.")],
    iteration: Annotated[Optional[int], typer.Option("--iteration", "-i", min=0, help="K, for per-iteration stages.")] = None,
    prefect: Annotated[bool, typer.Option(help="Run it as a Prefect flow, its items as tasks (what dvc.yaml runs).")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Run one pipeline stage (what `dvc repro` runs for each entry of dvc.yaml)."""
    from daggerlm.dagger.pipeline import run_stage, stage

    p = _params(params, set_)
    if prefect and stage(name).fans_out:
        from flows.stage import run_stage_flow  # the one place the library hands over to Prefect

        result = run_stage_flow(p, name, iteration)
    else:
        result = run_stage(p, name, iteration)
    if isinstance(result, dict):
        _print_stats(f"{name}" + (f" {iteration}" if iteration is not None else ""),
                     {k: v for k, v in result.items() if k != "config"})
    else:
        from daggerlm.report.table import markdown_table

        print(markdown_table(result))


@app.command("build-student")
def build_student_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Build the tiny student at student.model (what ./setup.sh runs), or find the same build there."""
    from daggerlm.dagger.stages import build_student

    _print_stats("build-student", build_student(_params(params, set_)))


pipeline_app = typer.Typer(no_args_is_help=True, help="The pipeline declared in daggerlm/dagger/pipeline.py.")
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("write")
def pipeline_write(params: ParamsOpt = Path("params.yaml"),
                   out: Annotated[Path, typer.Option(help="Where to write it.")] = Path("dvc.yaml")) -> None:
    """Write dvc.yaml from the stage table for params.yaml (iterations, data root, a local base model)."""
    from daggerlm.dagger.pipeline import write_pipeline

    console.print(f"wrote {write_pipeline(_params(params, None), out)}")


iterations_app = typer.Typer(no_args_is_help=True, help="Set how many DAgger iterations params.yaml runs.")
app.add_typer(iterations_app, name="iterations")


@iterations_app.command("set")
def iterations_set(n: Annotated[int, typer.Argument(min=1)], params: ParamsOpt = Path("params.yaml"),
                   dvc_file: Annotated[Path, typer.Option(help="dvc.yaml to regenerate.")] = Path("dvc.yaml")) -> None:
    """Write dagger.iterations = N to params.yaml (comments kept) and regenerate dvc.yaml."""
    from daggerlm.config import set_iterations
    from daggerlm.dagger.pipeline import write_pipeline

    write_pipeline(set_iterations(params, n), dvc_file)
    console.print(f"{params}: {n} iterations; {dvc_file} regenerated (stages rollout@0 .. rollout@{n - 1}, ...)")


@app.command("evaluate")
def evaluate_cmd(
    instances: Annotated[str, typer.Option(help="Any instances file or dataset name ...")],
    out: Annotated[Path, typer.Option(help="... evaluated by evaluation.policy (the initial student) into this directory.")],
    split: SplitOpt = "test",
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Evaluate a policy on any instances and grade it: predictions.jsonl, metrics.json, results/."""
    from daggerlm.dagger import stages
    from daggerlm.evaluation import evaluate
    from daggerlm.instances import load_instances

    p = _params(params, set_)
    items = load_instances(instances, split)  # a bad name or split is reported before a policy starts
    with stages.evaluation_policy(p, 0) as (policy, _):
        metrics = evaluate(items, policy, out, runtime=p.runtime, agent=p.agent,
                           concurrency=p.evaluation.concurrency, model_name=policy.identity, seed=p.seed,
                           max_failed_share=p.dagger.max_failed_share)
    _print_stats(f"{policy.identity} on {instances}", metrics)


@app.command("grade")
def grade_cmd(
    instances: Annotated[str, typer.Option(help="Instances file or dataset name.")],
    predictions: Annotated[Path, typer.Option(help="predictions.jsonl (swebench format).")],
    out: Annotated[Path, typer.Option(help="JSONL of per-instance reports.")],
    split: SplitOpt = "test",
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Grade a predictions file against instances with swebench's grading rules."""
    from daggerlm.evaluation import grade
    from daggerlm.instances import load_instances
    from daggerlm.io import atomic_write_jsonl

    p = _params(params, None)
    by_id = {i.instance_id: i for i in load_instances(instances, split)}
    if not predictions.is_file():
        raise InputError(f"{predictions}: predictions file not found")
    reports = []
    for lineno, line in enumerate(predictions.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pred = json.loads(line)
            inst = by_id[pred["instance_id"]]
            patch = pred["model_patch"]
        except json.JSONDecodeError as e:
            raise InputError(f"{predictions}:{lineno}: malformed JSON ({e.msg})") from None
        except KeyError as e:
            raise InputError(f"{predictions}:{lineno}: missing field or unknown instance {e}") from None
        except TypeError:
            raise InputError(f"{predictions}:{lineno}: expected a JSON object with instance_id and model_patch") from None
        if not isinstance(patch, str):
            raise InputError(f"{predictions}:{lineno}: model_patch must be a string (got {type(patch).__name__})")
        reports.append(grade(inst, patch, p.runtime))
    atomic_write_jsonl(out, reports)
    print(json.dumps({"graded": len(reports), "resolved": sum(r["resolved"] for r in reports)}))


@app.command("oracle")
def oracle_cmd(
    seed: Annotated[int, typer.Option(help="Seed of the synthetic eval split.")] = 0,
    n: Annotated[int, typer.Option(min=1, help="Number of eval instances.")] = 50,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/oracle"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """The oracle teacher on a synthetic eval split: every instance should resolve in 4-10 turns."""
    from daggerlm.evaluation import evaluate
    from daggerlm.instances import write_instances
    from daggerlm.instances.synthetic import generate
    from daggerlm.policies import make_policy

    p = _params(params, set_)
    items = generate(n, "eval", seed, p.instances.modules_per_repo, p.instances.functions_per_module)
    write_instances(out / "instances.jsonl", items)
    oracle = make_policy("oracle", **p.teacher.oracle_kwargs())
    metrics = evaluate(items, oracle, out, runtime=p.runtime, agent=p.agent,
                       concurrency=p.evaluation.concurrency, model_name="oracle")
    _print_stats(f"oracle on {n} synthetic eval instances (seed {seed})", metrics)
    console.print(f"results in {out}/ (metrics.json, predictions.jsonl, results/)")


@app.command("run")
def run_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Every DAgger iteration of params.yaml in this process (no Prefect, no DVC); prints the table."""
    from daggerlm.dagger import stages
    from daggerlm.dagger.loop import run_dagger
    from daggerlm.report.table import SHORT, shown_columns

    p = _params(params, set_)
    rows = run_dagger(p, log=lambda msg: console.print(msg, highlight=False))
    table = Table(title="DAgger iterations (loss0/loss1: loss on the aggregate before/after training)")
    columns = shown_columns(rows)
    for c in columns:
        table.add_column(SHORT[c], justify="right")
    base = json.loads((stages.layout(p).report() / "summary.json").read_text())["base"]  # checkpoint 0
    for r in [base, *rows]:
        table.add_row(*(f"{r[c]:.3f}" if isinstance(r[c], float) else "–" if r[c] is None else str(r[c])
                        for c in columns))
    Console().print(table)
    console.print(f"table saved to {stages.layout(p).report()}/summary.md and iterations.json; trajectories: "
                  f"{stages.layout(p).report()}/inspect/index.html")


@app.command("inspect")
def inspect_cmd(data: Annotated[Path, typer.Argument(help="The run's data directory (params' `data`).")] = Path("data"),
                out: Annotated[Optional[Path], typer.Option(help="Where to write the HTML (default: DATA/report/"
                                                                 "inspect).")] = None) -> None:
    """A static HTML report of a run's trajectories: the iterations, their episodes, every turn."""
    from daggerlm.dagger.inspect import write_inspector

    index = write_inspector(data, out)
    console.print(f"open {index.resolve().as_uri()}", highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app(standalone_mode=False)
    except InputError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(INPUT_ERROR_EXIT)
    except InfrastructureError as e:
        console.print(f"[red]failed (retry may help):[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(INFRASTRUCTURE_EXIT)
    except (typer.Exit, SystemExit) as e:
        sys.exit(getattr(e, "exit_code", getattr(e, "code", 0)) or 0)
    except Exception as e:
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # a usage error (typer vendors click's exceptions)
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()

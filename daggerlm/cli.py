"""The `daggerlm` command line: one command per stage (what dvc.yaml calls), plus the whole loop.

    daggerlm run                        # the main job: every stage of every iteration in params.yaml
    daggerlm instances make             # stage: synthetic train/eval splits of params.yaml
    daggerlm init-model                 # stage: the tiny student, built locally
    daggerlm rollout -i K | label -i K | aggregate -i K | train -i K | evaluate -i K
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
    instances: Annotated[str, typer.Argument(help="Instances file (.jsonl / .json / .parquet).")],
    out: Annotated[Path, typer.Option(help="JSONL file to write: the instances with their Docker spec.")],
    namespace: Annotated[str, typer.Option(help="Registry namespace of the official SWE-bench images.")] = "swebench",
) -> None:
    """Add what `swebench.harness.run_evaluation` runs by (image, eval_script, log_parser, eval_type):
    official image names for SWE-bench / SWE-Gym records, locally built images for the others."""
    from rich.progress import track

    from daggerlm.evaluation.harness import with_docker_spec
    from daggerlm.instances import load_instances, write_instances

    items = load_instances(instances)
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
def instances_validate(spec: str, split: str = "test") -> None:
    """Load and validate instances; print what they hold."""
    from daggerlm.instances import load_instances

    items = load_instances(spec, split)
    sources = Counter(i.source for i in items)
    runnable = sum(i.runnable_locally for i in items)
    print(json.dumps({"instances": len(items), "sources": sources, "runnable_locally": runnable}))


@instances_app.command("show")
def instances_show(spec: str, index: int = 0, split: str = "test") -> None:
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


IterOpt = Annotated[int, typer.Option("--iteration", "-i", min=0, help="DAgger iteration K.")]


def _print_stats(title: str, stats: dict) -> None:
    Console().print(_metrics_table(title, stats))


@instances_app.command("make")
def instances_make(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Stage: write the synthetic train and eval splits of params.yaml under data/instances/."""
    from daggerlm.dagger import stages

    print(json.dumps(stages.stage_instances(_params(params, set_))))


iterations_app = typer.Typer(no_args_is_help=True, help="Set how many DAgger iterations params.yaml runs.")
app.add_typer(iterations_app, name="iterations")


@iterations_app.command("set")
def iterations_set(n: Annotated[int, typer.Argument(min=1)], params: ParamsOpt = Path("params.yaml")) -> None:
    """Write dagger.iterations = N and the per-iteration paths dvc.yaml iterates over (comments kept)."""
    from daggerlm.config import set_iterations

    set_iterations(params, n)
    console.print(f"{params}: {n} iterations (dvc stages rollout@0 .. rollout@{n - 1}, and so on)")


@app.command("init-model")
def init_model_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Stage: build the tiny student (tokenizer trained locally, random weights) at student.model."""
    from daggerlm.dagger import stages

    print(json.dumps(stages.stage_init_model(_params(params, set_))))


@app.command("rollout")
def rollout_cmd(iteration: IterOpt, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Stage: roll out checkpoint K on the train split with β-mixing."""
    from daggerlm.dagger import stages

    _print_stats(f"rollout {iteration}", stages.stage_rollout(_params(params, set_), iteration))


@app.command("label")
def label_cmd(iteration: IterOpt, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Stage: label every state visited in iteration K (batched, through the label cache)."""
    from daggerlm.dagger import stages

    _print_stats(f"label {iteration}", stages.stage_label(_params(params, set_), iteration))


@app.command("aggregate")
def aggregate_cmd(iteration: IterOpt, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Stage: aggregate K = aggregate K-1 ∪ labels K, de-duplicated by state hash."""
    from daggerlm.dagger import stages

    _print_stats(f"aggregate {iteration}", stages.stage_aggregate(_params(params, set_), iteration))


@app.command("train")
def train_cmd(iteration: IterOpt, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Stage: fine-tune on aggregate K (TRL SFT) into checkpoint K+1."""
    from daggerlm.dagger import stages

    meta = stages.stage_train(_params(params, set_), iteration)
    _print_stats(f"train {iteration}", {k: v for k, v in meta.items() if k != "config"})


@app.command("evaluate")
def evaluate_cmd(
    iteration: Annotated[Optional[int], typer.Option("--iteration", "-i", min=0,
                                                     help="Stage: evaluate checkpoint K+1 on the eval split.")] = None,
    instances: Annotated[Optional[str], typer.Option(help="Or: any instances file / dataset name ...")] = None,
    out: Annotated[Optional[Path], typer.Option(help="... evaluated by evaluation.policy into this directory.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Evaluate a policy and grade it: predictions.jsonl, metrics.json, results/."""
    from daggerlm.dagger import stages
    from daggerlm.evaluation import evaluate
    from daggerlm.instances import load_instances

    p = _params(params, set_)
    if iteration is not None:
        _print_stats(f"evaluate {iteration}", stages.stage_evaluate(p, iteration))
        return
    if instances is None or out is None:
        raise InputError("evaluate: give --iteration K, or both --instances and --out")
    with stages.evaluation_policy(p, 0) as (policy, _):
        metrics = evaluate(load_instances(instances), policy, out, runtime=p.runtime, agent=p.agent,
                           concurrency=p.evaluation.concurrency, model_name=policy.identity, seed=p.seed)
    _print_stats(f"{policy.identity} on {instances}", metrics)


@app.command("grade")
def grade_cmd(
    instances: Annotated[str, typer.Option(help="Instances file or dataset name.")],
    predictions: Annotated[Path, typer.Option(help="predictions.jsonl (swebench format).")],
    out: Annotated[Path, typer.Option(help="JSONL of per-instance reports.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Grade a predictions file against instances with swebench's grading rules."""
    from daggerlm.evaluation import grade
    from daggerlm.instances import load_instances
    from daggerlm.io import atomic_write_jsonl

    p = _params(params, None)
    by_id = {i.instance_id: i for i in load_instances(instances)}
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


@app.command("report")
def report_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Stage: the per-iteration table from the stats files (data/report/)."""
    from daggerlm.dagger import stages
    from daggerlm.dagger.loop import markdown_table

    print(markdown_table(stages.stage_report(_params(params, set_))))


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
    """The main job: every DAgger iteration of params.yaml; prints and saves the per-iteration table."""
    from daggerlm.dagger import stages
    from daggerlm.dagger.loop import SHORT, run_dagger, shown_columns

    p = _params(params, set_)
    rows = run_dagger(p, log=lambda msg: console.print(msg, highlight=False))
    table = Table(title="DAgger iterations (loss0/loss1: loss on the aggregate before/after training)")
    columns = shown_columns(rows)
    for c in columns:
        table.add_column(SHORT[c], justify="right")
    for r in rows:
        table.add_row(*(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns))
    Console().print(table)
    console.print(f"table saved to {stages.layout(p).root}/summary.md and summary.json")


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

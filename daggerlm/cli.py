"""The `daggerlm` command line: one command per stage.

    daggerlm run                                   # the main job on params.yaml (oracle on the eval split)
    daggerlm instances synth --n 50 --split eval --seed 7 --out data/instances/eval.jsonl
    daggerlm instances validate FILE_OR_DATASET
    daggerlm instances show FILE_OR_DATASET --index 0
    daggerlm evaluate --instances data/instances/eval.jsonl --out runs/eval
    daggerlm grade --instances FILE --predictions predictions.jsonl --out reports.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from daggerlm.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="DAgger for multi-turn LLM SWE agents.")
instances_app = typer.Typer(no_args_is_help=True, help="Create, validate and inspect task instances.")
app.add_typer(instances_app, name="instances")
console = Console(stderr=True)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params.yaml to read (absent file: defaults).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a param: section.key=value (YAML value).")]


def _overrides(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--set {pair!r}: expected section.key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _params(path: Path, pairs: list[str] | None, extra: dict | None = None):
    from daggerlm.config import load_params

    return load_params(path if path.exists() or str(path) != "params.yaml" else None,
                       {**_overrides(pairs), **(extra or {})})


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


@app.command("evaluate")
def evaluate_cmd(
    instances: Annotated[str, typer.Option(help="Instances file or dataset name.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Run the evaluation policy on instances and grade it: predictions.jsonl, metrics.json."""
    from daggerlm.evaluation import evaluate
    from daggerlm.instances import load_instances
    from daggerlm.policies import make_policy

    p = _params(params, set_)
    items = load_instances(instances)
    metrics = evaluate(items, make_policy(p.evaluation.policy), out, runtime=p.runtime, agent=p.agent,
                       workers=p.evaluation.workers, model_name=p.evaluation.model_name)
    Console().print(_metrics_table(f"{p.evaluation.policy} on {instances}", metrics))


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
    reports = []
    for lineno, line in enumerate(predictions.read_text().splitlines(), start=1):
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
        reports.append(grade(inst, patch, p.runtime))
    atomic_write_jsonl(out, reports)
    print(json.dumps({"graded": len(reports), "resolved": sum(r["resolved"] for r in reports)}))


@app.command("run")
def run_cmd(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the synthetic eval split (overrides params).")] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/main"),
) -> None:
    """The main job: generate the synthetic eval split and evaluate the oracle on it."""
    from daggerlm.evaluation import evaluate
    from daggerlm.instances import write_instances
    from daggerlm.instances.synthetic import generate
    from daggerlm.policies import make_policy

    p = _params(params, set_, {"evaluation.instances.seed": seed} if seed is not None else None)
    spec = p.evaluation.instances
    items = generate(spec.n, spec.split, spec.seed, spec.modules_per_repo, spec.functions_per_module)
    write_instances(out / "instances.jsonl", items)
    metrics = evaluate(items, make_policy(p.evaluation.policy), out, runtime=p.runtime, agent=p.agent,
                       workers=p.evaluation.workers, model_name=p.evaluation.model_name)
    Console().print(_metrics_table(f"{p.evaluation.policy} on {spec.n} synthetic {spec.split} instances "
                                   f"(seed {spec.seed})", metrics))
    console.print(f"results in {out}/ (metrics.json, predictions.jsonl, results/)")


def main() -> None:
    try:
        app(standalone_mode=False)
    except InputError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as e:
        sys.exit(getattr(e, "exit_code", getattr(e, "code", 0)) or 0)
    except Exception as e:
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()

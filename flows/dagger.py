"""The DAgger loop as a Prefect flow: what users trigger (UI, deployment) and schedule.

    python -m flows.dagger                 # run once on params.yaml (temporary local Prefect server)
    python -m flows.dagger --set instances.train.n=4 --set dagger.iterations=3   # params changed first
    python -m flows.dagger --serve         # development: serve the flow, trigger runs from the UI

Parameters given in the UI (or `--set`) are validated (pydantic) and written to params.yaml, and
dvc.yaml is regenerated from the stage table, before any stage runs; then every stage runs through
DVC in pipeline order, so `dvc status` is clean afterwards and an unchanged stage is skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prefect import flow
from prefect.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)
from pydantic import BaseModel, ConfigDict, Field

from daggerlm.config import Params, edit_params, load_params
from daggerlm.dagger.layout import Layout
from daggerlm.dagger.pipeline import dvc_name, order, write_pipeline
from daggerlm.config import BetaSchedule
from daggerlm.errors import INPUT_ERROR_EXIT, InputError
from daggerlm.io import ResultStore, parse_overrides
from tasks.stages import StageFailed, dvc_stage


class DaggerRun(BaseModel):
    """What the UI form asks for; anything left empty keeps its params.yaml value."""

    model_config = ConfigDict(extra="forbid")
    iterations: int | None = Field(None, ge=1, description="DAgger iterations to run (in all).")
    more_iterations: int | None = Field(None, ge=1, description=(
        "Or: run this many iterations past those already done (each with its β from the schedule); what "
        "a schedule uses, so each scheduled run performs the next iteration."))
    beta: BetaSchedule | None = Field(None, description="β schedule (teacher probability per iteration).")
    seed: int | None = None
    train_instances: int | None = Field(None, ge=1)
    eval_instances: int | None = Field(None, ge=1)
    overrides: list[str] = Field([], description="Any other param, as section.key=value (a YAML value).")
    project: str = Field(".", description="Directory holding dvc.yaml and params.yaml.")


def iterations_done(p: Params, project: Path) -> int:
    """How many iterations, from the first, have finished (their evaluation's metrics exist)."""
    lay = Layout(project / p.data)
    done = 0
    while (lay.eval(done) / "metrics.json").is_file():
        done += 1
    return done


def write_params(run: DaggerRun) -> Params:
    """Apply the UI's values to params.yaml (comments kept) and regenerate dvc.yaml from it."""
    if run.iterations is not None and run.more_iterations is not None:
        raise InputError("give iterations or more_iterations, not both")
    project = Path(run.project)
    path = project / "params.yaml"
    iterations = run.iterations
    if run.more_iterations is not None:
        iterations = iterations_done(load_params(path), project) + run.more_iterations

    def edit(data: dict) -> None:  # a user's params.yaml holds only what they changed: sections may be absent
        for dotted, value in parse_overrides(run.overrides).items():
            *parents, leaf = dotted.split(".")
            section(data, *parents)[leaf] = value
        if iterations is not None:
            section(data, "dagger")["iterations"] = iterations
        if run.beta is not None:
            section(data, "dagger")["beta"] = run.beta.model_dump()
        if run.seed is not None:
            data["seed"] = run.seed
        for split, n in (("train", run.train_instances), ("eval", run.eval_instances)):
            if n is not None:
                source = section(data, "instances", split).get("source", "synthetic")
                if source not in ("synthetic", "mutation"):
                    raise InputError(f"{split}_instances: instances.{split} has source {source!r}, which takes "
                                     "no count (choose its records with ids or slice in params.yaml)")
                section(data, "instances", split)["n"] = n

    p = edit_params(path, edit)
    write_pipeline(p, project / "dvc.yaml")
    return p


def section(data: dict, *keys: str) -> dict:
    """data[k1][k2]..., made where absent (or null)."""
    for key in keys:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    return data


@flow(name="dagger", log_prints=True)
def dagger_flow(run: DaggerRun = DaggerRun()) -> list[dict]:
    p = write_params(run)
    stages = [dvc_name(s, k) for s, k in order(0, p.dagger.iterations)]
    progress = create_progress_artifact(0.0, key="dagger-progress", description="stages done / all stages")
    results = []
    for i, stage in enumerate(stages, start=1):
        results.append(dvc_stage(stage, run.project))
        update_progress_artifact(progress, 100.0 * i / len(stages))
    lay = Layout(Path(run.project) / p.data)
    rows = json.loads((lay.report() / "iterations.json").read_text())
    create_markdown_artifact((lay.report() / "summary.md").read_text(), key="dagger-summary",
                             description="the base student, then one row per iteration")
    create_link_artifact((lay.inspector() / "index.html").resolve().as_uri(), link_text="every episode, turn by turn",
                         key="dagger-inspector", description="the run's HTML inspector (a file on the flow's machine)")
    table = []
    for value in ResultStore(lay.eval(p.dagger.iterations - 1) / "results").values():
        table.append({"instance_id": value["trajectory"]["instance_id"], "resolved": value["report"]["resolved"],
                      "turns": len(value["trajectory"]["turns"]), "exit_status": value["trajectory"]["exit_status"]})
    create_table_artifact(table, key="dagger-eval-instances", description="last iteration, per instance")
    print(f"stages run: {sum(r['ran'] for r in results)} of {len(results)}")
    return rows


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.dagger", description=__doc__.split("\n")[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change a param in params.yaml before the run (repeatable)")
    parser.add_argument("--serve", action="store_true", help="serve the flow; trigger runs from the UI")
    args = parser.parse_args(argv)
    if args.serve:
        dagger_flow.serve(name="dagger-dev", limit=1)
        return
    try:
        dagger_flow(DaggerRun(overrides=args.overrides))
    except (InputError, StageFailed) as e:  # after Prefect's log of the failed run: the one line that says why
        print(f"error: {e}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT if isinstance(e, InputError) else e.exit_code or 1)


if __name__ == "__main__":
    main()

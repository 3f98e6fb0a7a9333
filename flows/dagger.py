"""The DAgger loop as a Prefect flow: what users trigger (UI, deployment) and schedule.

    python -m flows.dagger                 # run once on params.yaml (temporary local Prefect server)
    python -m flows.dagger --serve         # development: serve the flow, trigger runs from the UI

Parameters given in the UI are validated (pydantic) and written to params.yaml before any stage
runs; then every stage runs through DVC in pipeline order, so `dvc status` is clean afterwards and
an unchanged stage is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.artifacts import update_progress_artifact
from pydantic import BaseModel, ConfigDict, Field

from daggerlm.config import edit_params, load_params
from daggerlm.dagger.loop import markdown_table
from daggerlm.dagger.schedules import BetaSchedule
from daggerlm.io import ResultStore
from tasks.stages import dvc_stage


class DaggerRun(BaseModel):
    """What the UI form asks for; anything left empty keeps its params.yaml value."""

    model_config = ConfigDict(extra="forbid")
    iterations: int | None = Field(None, ge=1, description="DAgger iterations to run.")
    beta: BetaSchedule | None = Field(None, description="β schedule (teacher probability per iteration).")
    seed: int | None = None
    train_instances: int | None = Field(None, ge=1)
    eval_instances: int | None = Field(None, ge=1)
    project: str = Field(".", description="Directory holding dvc.yaml and params.yaml.")


def stage_order(iterations: int) -> list[str]:
    per_iteration = [f"{s}@{k}" for k in range(iterations) for s in ("rollout", "label", "aggregate", "train",
                                                                     "evaluate")]
    return ["instances", "init-model", *per_iteration, "report"]


def write_params(run: DaggerRun) -> int:
    """Apply the UI's values to params.yaml (comments kept); returns the number of iterations."""
    path = Path(run.project) / "params.yaml"

    def edit(data: dict) -> None:
        if run.iterations is not None:
            data["dagger"]["iterations"] = run.iterations
        if run.beta is not None:
            data["dagger"]["beta"] = run.beta.model_dump()
        if run.seed is not None:
            data["seed"] = run.seed
        if run.train_instances is not None:
            data["instances"]["train"]["n"] = run.train_instances
        if run.eval_instances is not None:
            data["instances"]["eval"]["n"] = run.eval_instances

    edit_params(path, edit)
    return load_params(path).dagger.iterations


@flow(name="dagger", log_prints=True)
def dagger_flow(run: DaggerRun = DaggerRun()) -> list[dict]:
    iterations = write_params(run)
    stages = stage_order(iterations)
    progress = create_progress_artifact(0.0, key="dagger-progress", description="stages done / all stages")
    results = []
    for i, stage in enumerate(stages, start=1):
        results.append(dvc_stage(stage, run.project))
        update_progress_artifact(progress, 100.0 * i / len(stages))
    rows = json.loads((Path(run.project) / "data" / "report" / "iterations.json").read_text())
    create_markdown_artifact(markdown_table(rows), key="dagger-summary", description="per-iteration table")
    last_eval = ResultStore(Path(run.project) / "data" / "eval" / f"iter_{iterations - 1}" / "results")
    table = []
    for value in last_eval.values():
        table.append({"instance_id": value["trajectory"]["instance_id"], "resolved": value["report"]["resolved"],
                      "turns": len(value["trajectory"]["turns"]), "exit_status": value["trajectory"]["exit_status"]})
    create_table_artifact(table, key="dagger-eval-instances", description="last iteration, per instance")
    print(f"stages run: {sum(r['ran'] for r in results)} of {len(results)}")
    return rows


if __name__ == "__main__":
    import sys

    if "--serve" in sys.argv[1:]:
        dagger_flow.serve(name="dagger-dev", limit=1)
    else:
        dagger_flow()

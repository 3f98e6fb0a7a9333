"""A fan-out stage (rollout, label, evaluate of iteration K) as a Prefect flow, its items as tasks:
what `daggerlm stage NAME -i K --prefect` runs (and so what dvc.yaml runs for those stages).

    daggerlm stage rollout -i 1 --prefect     # from the project root (where params.yaml is)

Under the loop flow it reports to the loop's server; alone it starts a temporary local one.
"""

from __future__ import annotations

import json

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from daggerlm.config import Params
from daggerlm.dagger.pipeline import dvc_name, run_stage, stage
from daggerlm.dagger.stages import check_shippable
from tasks.episodes import PrefectRunner


@flow(name="dagger-stage", log_prints=True)
def stage_flow(p: Params, name: str, iteration: int | None) -> dict:
    tag = name if iteration is None else f"{name}-{iteration}"  # an artifact key: lowercase, digits, dashes
    stats = run_stage(p, name, iteration, runner=PrefectRunner(f"{tag}-progress"))
    print(f"{dvc_name(stage(name), iteration)}: {json.dumps(stats, sort_keys=True)}")
    return stats


def run_stage_flow(p: Params, name: str, iteration: int | None) -> dict:
    run_name = dvc_name(stage(name), iteration)  # rollout@1, evaluate-base
    return stage_flow.with_options(task_runner=task_runner(p), flow_run_name=run_name)(p, name, iteration)


def task_runner(p: Params):
    """Threads in this process (one per concurrent item: a wave's lockstep batcher waits for every item
    of the wave), or a Dask cluster (`dagger.executor`): a running one, or a local one for the stage."""
    concurrency = max(p.dagger.concurrency, p.evaluation.concurrency)
    e = p.dagger.executor
    if e.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=concurrency)
    from prefect_dask import DaskTaskRunner

    check_shippable(p)
    if e.address:
        return DaskTaskRunner(address=e.address)
    threads = -(-concurrency // e.workers)  # the stage's concurrency, over the workers
    return DaskTaskRunner(cluster_kwargs={"n_workers": e.workers, "processes": True, "threads_per_worker": threads,
                                          "dashboard_address": None})

"""A stage's items (episodes, trajectories to label) as Prefect tasks.

Each item is a task run, visible in the UI, whose result is persisted under the item's key (the
key names the checkpoint hash, instance, iteration, β and seed): when a killed stage is started
again, finished items come back from the cache and only the rest run. Waves of `concurrency`
items keep the lockstep batches of `daggerlm.agent.runner`. An item that fails for infrastructure
reasons fails its task run (never cached) and is reported in the outcome, not raised.
"""

from __future__ import annotations

from functools import partial

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from daggerlm.agent.runner import Outcome, wave_size
from daggerlm.errors import InfrastructureError


@task(cache_key_fn=lambda context, parameters: parameters["key"], persist_result=True, result_serializer="json",
      task_run_name="{name}")
def item_task(name: str, key: str, work) -> dict:
    return work()


class PrefectRunner:
    """`ItemRunner` on Prefect tasks; `artifact_key` names the stage's progress artifact."""

    def __init__(self, artifact_key: str):
        self.artifact_key = artifact_key

    def __call__(self, items, names, keys, work, *, concurrency, batchers=(), on_done=None) -> Outcome:
        progress = create_progress_artifact(0.0, key=self.artifact_key, description="items done / all items")
        results: dict[int, dict] = {}
        failed: dict[str, str] = {}
        reused = 0

        def body(i: int) -> dict:  # in this process, or a copy of it on a Dask worker
            try:
                return work(items[i])
            finally:
                for b in batchers:
                    b.finish()

        step = wave_size(batchers, concurrency, len(items))  # the task runner's max_workers bounds concurrency
        for start in range(0, len(items), step):
            wave = range(start, min(start + step, len(items)))
            for b in batchers:
                b.register(len(wave))
            futures = {item_task.submit(names[i], keys[i], partial(body, i)): i for i in wave}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except InfrastructureError as e:
                    failed[names[i]] = str(e)
                    continue
                if future.state.name == "Cached":  # (read after the result: only then is it the final state)
                    reused += 1
                    for b in batchers:  # its body never ran, so the batcher must stop waiting for it
                        b.finish()
                if on_done:
                    on_done(results[i])
                update_progress_artifact(progress, 100.0 * len(results) / len(items))
        get_run_logger().info(f"{self.artifact_key}: {reused} of {len(items)} items reused from the cache, "
                              f"{len(items) - reused} run, {len(failed)} failed")
        return Outcome([results[i] for i in sorted(results)], reused, failed)

"""An episode stage (rollout, label or evaluate of iteration K) as a Prefect flow: the command that
`dvc.yaml` runs for `rollout@K`, `label@K` and `evaluate@K`.

    daggerlm-stage rollout 1            # from the project root (where params.yaml is)

Under the loop flow it reports to the loop's server; alone it starts a temporary local one.
"""

from __future__ import annotations

import json
import sys

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from daggerlm.config import load_params
from daggerlm.dagger import stages
from daggerlm.errors import INFRASTRUCTURE_EXIT, INPUT_ERROR_EXIT, InfrastructureError, InputError
from tasks.episodes import PrefectRunner

STAGES = {"rollout": stages.stage_rollout, "label": stages.stage_label, "evaluate": stages.stage_evaluate}


@flow(name="dagger-stage", flow_run_name="{stage}@{iteration}", log_prints=True)
def episode_stage(stage: str, iteration: int, params: str = "params.yaml") -> dict:
    stats = STAGES[stage](load_params(params), iteration, runner=PrefectRunner(f"{stage}-{iteration}-progress"))
    print(f"{stage}@{iteration}: {json.dumps(stats, sort_keys=True)}")
    return stats


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) != 2 or args[0] not in STAGES or not args[1].isdigit():
            raise InputError(f"usage: daggerlm-stage {{{'|'.join(STAGES)}}} ITERATION (got {' '.join(args)!r})")
        p = load_params("params.yaml")
        # one thread per concurrent item: a wave's batcher waits for every item of the wave
        runner = ThreadPoolTaskRunner(max_workers=max(p.dagger.concurrency, p.evaluation.concurrency))
        episode_stage.with_options(task_runner=runner)(args[0], int(args[1]))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT)
    except InfrastructureError as e:
        print(f"failed (retry may help): {e}", file=sys.stderr)
        sys.exit(INFRASTRUCTURE_EXIT)


if __name__ == "__main__":
    main()

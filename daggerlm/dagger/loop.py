"""The DAgger loop, in one process: every stage of every iteration, in the order `pipeline.STAGES`
declares (per iteration: roll out with β-mixing, label every visited state, aggregate, fine-tune,
evaluate), then the per-iteration table.

    daggerlm run            # all iterations of params.yaml
"""

from __future__ import annotations

from collections.abc import Callable

from daggerlm.config import Params
from daggerlm.dagger.pipeline import dvc_name, order, run_stage


def run_dagger(p: Params, log: Callable[[str], None] = print) -> list[dict]:
    """DAgger: for each iteration, `run_stage` each of its stages; returns the report's table rows."""
    rows: list[dict] = []
    for stage, k in order(0, p.dagger.iterations):
        result = run_stage(p, stage.name, k)
        rows = result if stage.name == "report" else rows
        log(f"{dvc_name(stage, k)}: {_short(result)}")
    return rows


def _short(result) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, (dict, list)))
    return f"{len(result)} rows"

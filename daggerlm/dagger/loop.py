"""The DAgger loop: for each iteration, roll out with β-mixing, label every visited state,
aggregate, fine-tune, evaluate; then print and save the per-iteration table.

    daggerlm run            # all iterations of params.yaml
"""

from __future__ import annotations

from collections.abc import Callable

from daggerlm.config import Params
from daggerlm.dagger import stages
from daggerlm.io import atomic_write_json, atomic_write_text

COLUMNS = ["iteration", "beta", "episodes", "labels_new", "labels_total", "teacher_calls", "cache_hits",
           "calls_per_state", "failed", "teacher_tokens", "teacher_cost_usd", "train_loss_before",
           "train_loss_after", "resolve_rate"]
SHORT = {"iteration": "K", "beta": "β", "episodes": "eps", "labels_new": "new", "labels_total": "labels",
         "teacher_calls": "calls", "cache_hits": "hits", "calls_per_state": "calls/state",
         "train_loss_before": "loss0", "train_loss_after": "loss1", "resolve_rate": "resolved",
         "failed": "failed", "teacher_tokens": "tokens", "teacher_cost_usd": "cost $"}


def iteration_row(k: int, rollout: dict, label: dict, agg: dict, train: dict, evaluation: dict) -> dict:
    calls = rollout["teacher_calls"] + label["teacher_calls"]
    return {
        "iteration": k, "beta": rollout["beta"], "episodes": rollout["episodes"],
        "labels_new": agg["new_examples"], "labels_total": agg["examples"], "teacher_calls": calls,
        "cache_hits": rollout["cache_hits"] + label["cache_hits"],
        "calls_per_state": calls / label["states"] if label["states"] else 0.0,
        "failed": (rollout.get("failed_episodes", 0) + label.get("failed_trajectories", 0)
                   + evaluation.get("failed_episodes", 0)),
        "teacher_tokens": label.get("teacher_prompt_tokens", 0) + label.get("teacher_completion_tokens", 0),
        "teacher_cost_usd": label.get("teacher_cost_usd", 0.0),
        "train_loss_before": train["loss_before"], "train_loss_after": train["loss_after"],
        "resolve_rate": evaluation["resolve_rate"],
    }


SERVED_ONLY = ("failed", "teacher_tokens", "teacher_cost_usd")
"""Columns that only a served policy fills (`failed`: episodes or labels left out of a stage because
a policy could not be reached, within `dagger.max_failed_share`)."""


def shown_columns(rows: list[dict]) -> list[str]:
    """The columns worth a terminal's width: the served-teacher ones only when some row has them."""
    return [c for c in COLUMNS if c not in SERVED_ONLY or any(r.get(c) for r in rows)]


def markdown_table(rows: list[dict]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def run_dagger(p: Params, log: Callable[[str], None] = print) -> list[dict]:
    """Run every stage of every iteration in order; returns the table rows (also in data/summary.*)."""
    log(f"instances: {stages.stage_instances(p)}")
    log(f"init-model: {stages.stage_init_model(p)}")
    rows = []
    for k in range(p.dagger.iterations):
        rollout = stages.stage_rollout(p, k)
        label = stages.stage_label(p, k)
        agg = stages.stage_aggregate(p, k)
        train = stages.stage_train(p, k)
        evaluation = stages.stage_evaluate(p, k)
        rows.append(iteration_row(k, rollout, label, agg, train, evaluation))
        log(f"iteration {k}: {rows[-1]}")
    root = stages.layout(p).root
    atomic_write_json(root / "summary.json", {"rows": rows, "params": p.model_dump(mode="json")})
    atomic_write_text(root / "summary.md", markdown_table(rows))
    return rows

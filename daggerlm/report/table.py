"""The per-iteration table: one row per DAgger iteration, from the stages' own stats files, after the
base student's row."""

from __future__ import annotations

COLUMNS = ["iteration", "beta", "labels_total", "resolve_rate", "episodes", "labels_new", "teacher_calls",
           "cache_hits", "calls_per_state", "failed", "teacher_tokens", "teacher_cost_usd", "train_loss_before",
           "train_loss_after", "forward_kl", "reverse_kl", "entropy", "generation_budget", "student_entropy"]
"""What users look for first comes first (iteration, β, labels, resolve rate)."""
SHORT = {"iteration": "K", "beta": "β", "episodes": "eps", "labels_new": "new", "labels_total": "labels",
         "teacher_calls": "calls", "cache_hits": "hits", "calls_per_state": "calls/state",
         "train_loss_before": "loss0", "train_loss_after": "loss1", "resolve_rate": "resolved",
         "failed": "failed", "teacher_tokens": "tokens", "teacher_cost_usd": "cost $",
         "forward_kl": "FKL", "reverse_kl": "RKL", "entropy": "entropy", "generation_budget": "budget",
         "student_entropy": "H(eval)"}
SOMETIMES = ("failed", "teacher_tokens", "teacher_cost_usd", "forward_kl", "reverse_kl", "entropy",
             "generation_budget", "student_entropy")
"""Columns that only some runs fill: a served policy (`failed`: episodes or labels left out of a stage
because a policy could not be reached, within `dagger.max_failed_share`; tokens; cost), a distillation
objective (the mean divergences to the teacher and the student's entropy per token while training),
the length curriculum (the rollout's generation budget per turn; the trained student's entropy on its
eval actions, which grows the next one's)."""


def iteration_row(k: int, rollout: dict, label: dict, agg: dict, train: dict, evaluation: dict,
                  curriculum: dict | None = None) -> dict:
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
        **{c: train.get("objective_stats", {}).get(c) for c in ("forward_kl", "reverse_kl", "entropy")},
        "generation_budget": (curriculum or {}).get("budget"),
        "student_entropy": (curriculum or {}).get("student_entropy"),
    }


def base_row(evaluation: dict) -> dict:
    """Checkpoint 0 on the eval split, as the table's first row (K = base): where the iterations start."""
    return {c: None for c in COLUMNS} | {"iteration": "base", "resolve_rate": evaluation["resolve_rate"],
                                         "failed": evaluation.get("failed_episodes", 0)}


def shown_columns(rows: list[dict]) -> list[str]:
    """The columns worth a terminal's width: the occasional ones only when some row has them."""
    return [c for c in COLUMNS if c not in SOMETIMES or any(r.get(c) for r in rows)]


def markdown_table(rows: list[dict]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "–" if v is None else str(v)  # noqa: E731
    columns = shown_columns(rows)
    lines = ["| " + " | ".join(SHORT[c] for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"

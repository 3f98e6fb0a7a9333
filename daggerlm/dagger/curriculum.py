"""The entropy-gated length curriculum (*Decoupling KL and Trajectories*): the student's generation
budget per turn starts short and grows only as the student grows sure of what it writes.

Rollout 0 runs with `start_tokens`. Rollout K ≥ 1 runs with `growth` × rollout K−1's budget (at most
student.sampling.max_new_tokens) when checkpoint K, the student that acts in it, has a mean token
entropy on its own eval actions below `entropy_below`; else with rollout K−1's. Evaluate K−1 is the
stage that evaluates checkpoint K: it measures the entropy and writes both budgets to its
`curriculum.json`, which rollout K (and evaluate K, for the chain) read as declared deps, so every
stage stays a function of its deps and params and `dvc repro` reruns exactly what a changed entropy
changes. With the curriculum off the file is constant and nothing reruns on its account.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from daggerlm.config.training import CurriculumConfig
from daggerlm.errors import InputError

OFF = {"kind": "none"}


def rollout_budget(c: CurriculumConfig, cap: int, k: int, previous: Path) -> int | None:
    """Rollout k's max new tokens per student turn (from evaluate k−1's record, `previous`); None: off."""
    if c.kind == "none":
        return None
    if k == 0:
        return min(cap, c.start_tokens)
    record = json.loads(previous.read_text()) if previous.is_file() else {}
    if record.get("kind") != c.kind:
        raise InputError(f"{previous}: no {c.kind}-gated budget in it (missing, or written with the curriculum "
                         f"off): run evaluate {k - 1} with this curriculum first")
    return record["next_budget"]


def next_budget(c: CurriculumConfig, budget: int, entropy: float, cap: int) -> int:
    return min(cap, math.ceil(budget * c.growth)) if entropy < c.entropy_below else budget


def record(c: CurriculumConfig, cap: int, budget: int, entropy: float) -> dict:
    """Evaluate K's record: the budget rollout K used, checkpoint K+1's entropy, rollout K+1's budget."""
    return {"kind": c.kind, "budget": budget, "student_entropy": entropy, "entropy_below": c.entropy_below,
            "next_budget": next_budget(c, budget, entropy, cap)}

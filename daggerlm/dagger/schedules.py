"""β schedules and the turn-level coin that decides who acts.

β_K is the probability that the teacher executes a turn in iteration K (0-based). The coin of a
turn is a pure function of (run seed, iteration, instance, turn), so a re-run makes the same choices
and an episode's choices do not depend on which other episodes ran beside it.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from daggerlm.agent.trajectory import Actor
from daggerlm.io import turn_seed

ScheduleKind = Literal["constant", "linear", "exponential", "floored_linear"]


class BetaSchedule(BaseModel):
    """β_K for iteration K = 0, 1, ...:

    - constant:        β_K = value
    - linear:          β_K = max(0, 1 − decay·K)
    - exponential:     β_K = p^K  (p = 0: pure on-policy after iteration 0)
    - floored_linear:  β_K = max(floor, 1 − decay·K)  (the DAgger-for-LLM-agents paper: floor 0.6, decay 0.2)
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    kind: ScheduleKind = "floored_linear"
    value: float = Field(1.0, ge=0.0, le=1.0)
    """β of the constant schedule."""
    p: float = Field(0.5, ge=0.0, le=1.0)
    """Base of the exponential schedule."""
    decay: float = Field(0.2, ge=0.0, le=1.0)
    """Per-iteration decrease of the linear schedules."""
    floor: float = Field(0.6, ge=0.0, le=1.0)
    """Lowest β of the floored linear schedule."""

    def beta(self, iteration: int) -> float:
        if self.kind == "constant":
            return self.value
        if self.kind == "linear":
            return max(0.0, 1.0 - self.decay * iteration)
        if self.kind == "exponential":
            return self.p**iteration
        return max(self.floor, 1.0 - self.decay * iteration)


def coin_schedule(seed: int, iteration: int, instance_id: str, beta: float, rollin_turns: int | None = None):
    """Who acts at turn t: the teacher with probability β; or, with AggreVaTe-style roll-in, the
    student for the first `rollin_turns` turns and the teacher afterwards."""

    def actor(turn: int) -> Actor:
        if rollin_turns is not None:
            return "student" if turn < rollin_turns else "teacher"
        u = random.Random(turn_seed(seed, iteration, instance_id, turn, "coin")).random()
        return "teacher" if u < beta else "student"

    return actor

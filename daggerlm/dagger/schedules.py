"""The turn-level coin that decides who acts (β schedules themselves: `config.BetaSchedule`).

β_K is the probability that the teacher executes a turn in iteration K (0-based). The coin of a
turn is a pure function of (run seed, iteration, instance, turn), so a re-run makes the same choices
and an episode's choices do not depend on which other episodes ran beside it.
"""

from __future__ import annotations

import random

from daggerlm.agent.trajectory import Actor
from daggerlm.io import turn_seed


def coin_schedule(seed: int, iteration: int, instance_id: str, beta: float, rollin_turns: int | None = None):
    """Who acts at turn t: the teacher with probability β; or, with AggreVaTe-style roll-in, the
    student for the first `rollin_turns` turns and the teacher afterwards."""

    def actor(turn: int) -> Actor:
        if rollin_turns is not None:
            return "student" if turn < rollin_turns else "teacher"
        u = random.Random(turn_seed(seed, iteration, instance_id, turn, "coin")).random()
        return "teacher" if u < beta else "student"

    return actor

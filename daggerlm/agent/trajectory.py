"""The trajectory record: one per episode, every turn's state, action, actor and label."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

TRAJECTORY_FORMAT = "daggerlm.trajectory/1"
Actor = Literal["teacher", "student"]
TURN_SECONDS = ("policy_s", "env_s")


def split_timings(record: dict) -> tuple[dict, dict]:
    """(a trajectory record without its wall-clock seconds, those seconds). The seconds are kept in a
    file of their own beside what they time (`io.TIMINGS`), out of what DVC hashes: two runs of the
    same params then give the same outs."""
    turns = record.get("turns", [])
    timings = {"wall_s": record.get("wall_s", 0.0), "turns": [[t.get(k, 0.0) for k in TURN_SECONDS] for t in turns]}
    kept = {k: v for k, v in record.items() if k != "wall_s"}
    kept["turns"] = [{k: v for k, v in t.items() if k not in TURN_SECONDS} for t in turns]
    return kept, timings


def join_timings(record: dict, timings: dict | None) -> dict:
    """`split_timings` undone (a record whose seconds were not kept keeps the defaults, 0)."""
    if not timings or len(timings["turns"]) != len(record.get("turns", [])):
        return record
    turns = [{**t, **dict(zip(TURN_SECONDS, seconds))} for t, seconds in zip(record["turns"], timings["turns"])]
    return {**record, "wall_s": timings["wall_s"], "turns": turns}


class Turn(BaseModel):
    index: int
    prefix_len: int
    """The state is `messages[:prefix_len]` of the trajectory (the linear history)."""
    snapshot: dict[str, str]
    """Environment state when the action was chosen (HEAD and diff from base): enough to relabel."""
    actor: Actor
    response: str
    """What the actor answered."""
    action: str | None
    """The command it parsed to; None on a format error."""
    label: str | None = None
    """The teacher's response for this state (its own response when it acted)."""
    observation: str | None = None
    returncode: int | None = None
    timed_out: bool = False
    policy_s: float = 0.0
    env_s: float = 0.0
    meta: dict = Field(default_factory=dict)
    token_ids: list[int] | None = None
    """The student's response's tokens as it generated them, where its policy knows them (`Completion`)."""
    token_logp: list[float] | None = None
    """Their log-probs under the student's model when it sampled them (temperature 1, before top-p)."""


class Trajectory(BaseModel):
    format: str = TRAJECTORY_FORMAT
    instance_id: str
    iteration: int = 0
    beta: float | None = None
    seed: int = 0
    policies: dict[str, str]
    """Identity of the policy behind each actor."""
    turns: list[Turn] = Field(default_factory=list)
    messages: list[dict] = Field(default_factory=list)
    exit_status: str = ""
    patch: str = ""
    n_format_errors: int = 0
    wall_s: float = 0.0

    @property
    def n_turns(self) -> int:
        return len(self.turns)

"""The trajectory record: one per episode, every turn's state, action, actor and label."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

TRAJECTORY_FORMAT = "daggerlm.trajectory/1"
Actor = Literal["teacher", "student"]


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

"""The agent scaffold: mini-swe-agent's loop with a DAgger-aware model wrapper.

mini-swe-agent's `DefaultAgent` drives the episode (linear history, step limit, format-error
feedback, submit). We add two things it does not do:
- `ActorModel`: a mini-swe-agent `Model` that asks a schedule which actor (teacher or student)
  answers each turn and passes the policy the whole state: instance, history and env snapshot;
- `EpisodeAgent`: records every turn (state, snapshot, actor, action, observation, timings) and,
  unlike mini-swe-agent 2.x, keeps an unparsable response in the history, because the student's
  own output is part of the DAgger state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from importlib import resources

import yaml
from minisweagent.agents.default import AgentConfig as MiniAgentConfig
from minisweagent.agents.default import DefaultAgent
from minisweagent.exceptions import FormatError, InterruptAgentFlow
from minisweagent.models.utils.actions_text import format_observation_messages, parse_regex_actions

from daggerlm.actions import ACTION_REGEX
from daggerlm.agent.trajectory import Actor, Trajectory, Turn
from daggerlm.config import AgentConfig
from daggerlm.errors import InfrastructureError
from daggerlm.io import turn_seed
from daggerlm.instances.schema import Instance
from daggerlm.policies.base import Policy, PolicyRequest
from daggerlm.runtime import open_sandbox
from daggerlm.runtime.sandbox import Sandbox

ActorSchedule = Callable[[int], Actor]
"""Which actor executes turn t (0-based)."""
POLICY_ERROR = "PolicyError"


class PolicyFailed(InterruptAgentFlow):
    """The acting policy gave no answer (a served model's request failed after its retries): the
    episode ends here with exit status `PolicyError`, the error recorded in its last turn."""


class PolicyUnavailable(InfrastructureError):
    """An episode that ended because its policy could not be reached: not data, never kept."""


@cache
def templates() -> dict[str, str]:
    return yaml.safe_load(resources.files("daggerlm.agent").joinpath("templates.yaml").read_text())


def first_messages(instance: Instance) -> list[dict[str, str]]:
    """The system and task messages an episode starts with."""
    from jinja2 import StrictUndefined, Template

    t = templates()
    render = lambda s: Template(s, undefined=StrictUndefined).render(task=instance.problem_statement)  # noqa: E731
    return [{"role": "system", "content": render(t["system_template"])},
            {"role": "user", "content": render(t["instance_template"])}]


class ActorModel:
    """mini-swe-agent `Model`: each turn, the scheduled actor's policy answers from the full state."""

    def __init__(self, instance: Instance, policies: dict[Actor, Policy], schedule: ActorSchedule,
                 request_seed: Callable[[int], int] | None = None):
        self.instance, self.policies, self.schedule = instance, policies, schedule
        self.request_seed = request_seed or (lambda turn: turn)
        self.config = templates()
        self.turn = 0

    def query(self, messages: list[dict], snapshot: dict[str, str] | None = None, **kwargs) -> dict:
        actor = self.schedule(self.turn)
        request = PolicyRequest(self.instance, [{"role": m["role"], "content": m["content"]} for m in messages],
                                snapshot or {}, seed=self.request_seed(self.turn))
        self.turn += 1
        start = time.monotonic()
        completion = self.policies[actor].complete([request])[0]
        extra = {"actor": actor, "meta": completion.meta, "policy_s": time.monotonic() - start}
        if actor == "student":  # its behaviour log-probs (a teacher's answer may come from the label cache)
            extra |= {"token_ids": completion.token_ids, "token_logp": completion.token_logp}
        if completion.meta.get("error"):
            raise PolicyFailed({"role": "exit", "content": f"{actor} failed: {completion.meta['error']}",
                                "extra": {**extra, "actions": [], "exit_status": POLICY_ERROR, "submission": ""}})
        try:
            actions = parse_regex_actions(completion.text, action_regex=ACTION_REGEX,
                                          format_error_template=self.config["format_error_template"])
        except FormatError as e:
            raise FormatError({"role": "assistant", "content": completion.text, "extra": {**extra, "actions": []}},
                              *e.messages) from None
        return {"role": "assistant", "content": completion.text, "extra": {**extra, "actions": actions}}

    def format_message(self, **kwargs) -> dict:
        return dict(kwargs)

    def format_observation_messages(self, message: dict, outputs: list[dict], template_vars: dict | None = None):
        return format_observation_messages(outputs, observation_template=self.config["observation_template"],
                                           template_vars=template_vars)

    def get_template_vars(self, **kwargs) -> dict:
        return {}

    def serialize(self) -> dict:
        return {"info": {"policies": {a: p.identity for a, p in self.policies.items()}}}


class EpisodeAgent(DefaultAgent):
    """DefaultAgent that records a `Trajectory` turn by turn."""

    def __init__(self, model: ActorModel, env: Sandbox, config: AgentConfig, trajectory: Trajectory):
        t = templates()
        super().__init__(model, env, system_template=t["system_template"], instance_template=t["instance_template"],
                         step_limit=config.step_limit, cost_limit=0,
                         max_consecutive_format_errors=config.max_consecutive_format_errors)
        self.extra_template_vars["observation_chars"] = config.observation_chars
        self.trajectory = trajectory

    def query(self) -> dict:
        if 0 < self.config.step_limit <= self.n_calls:
            return super().query()  # raises LimitsExceeded
        snapshot = self.env.snapshot()
        prefix_len = len(self.messages)
        self.n_calls += 1
        try:
            message = self.model.query(self.messages, snapshot=snapshot)
        except FormatError as e:
            bad = e.messages[0]
            self._record(prefix_len, snapshot, bad, action=None)
            self.trajectory.n_format_errors += 1
            raise
        except PolicyFailed as e:
            self._record(prefix_len, snapshot, {**e.messages[0], "content": ""}, action=None)
            raise
        self.add_messages(message)
        self._record(prefix_len, snapshot, message, action=message["extra"]["actions"][0]["command"])
        return message

    def _record(self, prefix_len: int, snapshot: dict, message: dict, action: str | None) -> None:
        extra = message["extra"]
        self.trajectory.turns.append(Turn(
            index=len(self.trajectory.turns), prefix_len=prefix_len, snapshot=snapshot, actor=extra["actor"],
            response=message["content"], action=action, policy_s=round(extra["policy_s"], 4), meta=extra["meta"],
            token_ids=extra.get("token_ids"), token_logp=extra.get("token_logp"),
            label=message["content"] if extra["actor"] == "teacher" and not extra["meta"].get("error") else None))

    def execute_actions(self, message: dict) -> list[dict]:
        start = time.monotonic()
        try:
            observations = super().execute_actions(message)
        finally:
            self.trajectory.turns[-1].env_s = round(time.monotonic() - start, 4)
        turn, obs = self.trajectory.turns[-1], observations[0]
        turn.observation, turn.returncode = obs["content"], obs["extra"].get("returncode")
        turn.timed_out = bool(obs["extra"].get("timed_out"))
        return observations


def run_episode(instance: Instance, policies: dict[Actor, Policy], schedule: ActorSchedule, *,
                runtime, agent: AgentConfig, iteration: int = 0, beta: float | None = None, seed: int = 0) -> Trajectory:
    """Run one episode in a fresh sandbox and return its trajectory (the sandbox is removed after).
    Raises `PolicyUnavailable` when a policy could not answer: an outage is not the agent's failure."""
    trajectory = Trajectory(instance_id=instance.instance_id, iteration=iteration, beta=beta, seed=seed,
                            policies={a: p.identity for a, p in policies.items()})
    start = time.monotonic()
    model = ActorModel(instance, policies, schedule,
                       request_seed=lambda turn: turn_seed(seed, iteration, instance.instance_id, turn, "sample"))
    with open_sandbox(instance, runtime) as env:
        episode = EpisodeAgent(model, env, agent, trajectory)
        result = episode.run(task=instance.problem_statement)
        if result.get("exit_status") != "Submitted":
            result["submission"] = env.snapshot()["diff"]  # what the agent left is still graded
    trajectory.exit_status = result.get("exit_status", "")
    if trajectory.exit_status == POLICY_ERROR:
        last = trajectory.turns[-1]
        raise PolicyUnavailable(f"{instance.instance_id}, turn {last.index} ({last.actor}): {last.meta.get('error')}")
    trajectory.patch = result.get("submission", "")
    trajectory.messages = [{"role": m["role"], "content": m["content"]} for m in episode.messages if m["role"] != "exit"]
    trajectory.wall_s = round(time.monotonic() - start, 3)
    return trajectory

"""The policy protocol shared by teachers and students, and the registry that names them.

A policy maps states to completions, in batches: a state is (instance, message history,
environment snapshot), which is everything needed to label it again later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from daggerlm.errors import InputError
from daggerlm.instances.schema import Instance


@dataclass
class PolicyRequest:
    instance: Instance
    messages: list[dict[str, str]]
    """The linear history so far (role/content), starting with the system and task messages."""
    snapshot: dict[str, str]
    """Environment state at this point: `head` and `diff` (from base_commit) of the worktree."""
    seed: int | None = None
    """Sampling seed of this request (from run seed, iteration, instance and turn), so sampled
    policies give the same answer to the same request whatever else is in the batch."""


@dataclass
class Completion:
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    """What makes the completion auditable: response id, usage, finish reason, sampling parameters."""
    token_ids: list[int] | None = None
    """The generated tokens, where the policy knows them (`hf`; a vLLM server asked for `logprobs`)."""
    token_logp: list[float] | None = None
    """Each generated token's log-prob under the model that sampled it, at temperature 1 before top-p
    (vLLM's default `raw_logprobs`): the behaviour log-prob an off-policy objective's importance ratio needs."""


class Policy(Protocol):
    identity: str
    """Names the policy and its sampling parameters; part of every label-cache key."""

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]: ...


POLICIES: dict[str, Callable[..., Policy]] = {}


def register(kind: str):
    def deco(factory):
        POLICIES[kind] = factory
        return factory

    return deco


def make_policy(kind: str, **kwargs: Any) -> Policy:
    if kind not in POLICIES:
        raise InputError(f"unknown policy kind '{kind}'; expected one of {sorted(POLICIES)}")
    return POLICIES[kind](**kwargs)

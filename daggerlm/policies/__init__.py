"""Students and teachers behind one protocol; `make_policy(kind)` picks one by name."""

from daggerlm.policies import oracle as _oracle  # noqa: F401  (registers "oracle")
from daggerlm.policies.base import POLICIES, Completion, Policy, PolicyRequest, make_policy

__all__ = ["POLICIES", "Completion", "Policy", "PolicyRequest", "make_policy"]

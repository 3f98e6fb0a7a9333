"""Students and teachers behind one protocol; `make_policy(kind)` picks one by name."""

from daggerlm.policies import oracle as _oracle  # noqa: F401  (registers "oracle")
from daggerlm.policies.base import POLICIES, Completion, Policy, PolicyRequest, make_policy, register


@register("hf")
def _make_hf(**kwargs):
    """Imported on use: torch and transformers are slow to import and the oracle needs neither."""
    from daggerlm.policies.hf import HFPolicy

    return HFPolicy(**kwargs)


@register("openai")
def _make_openai(**kwargs):
    """Any OpenAI-compatible server (vLLM, `transformers serve`, a hosted API)."""
    from daggerlm.policies.openai_compat import OpenAIPolicy

    return OpenAIPolicy(**kwargs)


__all__ = ["POLICIES", "Completion", "Policy", "PolicyRequest", "make_policy"]

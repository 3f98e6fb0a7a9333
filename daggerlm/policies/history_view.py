"""What the student sees of the history: optionally only its last few observations in full.

Agent episodes grow with every tool output (a pytest run is hundreds of tokens), and a small
student copies worst from far back in a long prompt. Like SWE-agent's "last N observations"
history processor, `elide_observations` keeps every action and the last `keep` observations, and
shortens older ones to their return code and a line count. Only the student gets this view, in
generation and in fine-tuning alike; trajectories, labels and the teacher keep the full history.
"""

from __future__ import annotations

import re
from dataclasses import replace

from daggerlm.policies.base import Completion, Policy, PolicyRequest

_OUTPUT = re.compile(r"<output>\n(.*?)</output>", re.DOTALL)


def _elided(observation: str) -> str:
    def shorten(m: re.Match) -> str:
        lines = len(m.group(1).splitlines())
        return f"<output>\n({lines} lines omitted)\n</output>" if lines else m.group(0)

    return _OUTPUT.sub(shorten, observation)


def elide_observations(messages: list[dict[str, str]], keep: int | None) -> list[dict[str, str]]:
    """`messages` with the tool outputs of all but the last `keep` observations omitted (None: all kept).

    Observations are the user messages after the system and task messages."""
    if keep is None:
        return messages
    observed = [i for i, m in enumerate(messages) if i >= 2 and m["role"] == "user"]
    old = set(observed[: max(0, len(observed) - keep)])
    return [{**m, "content": _elided(m["content"])} if i in old else m for i, m in enumerate(messages)]


class HistoryView:
    """A student policy that is shown `elide_observations(messages, keep)` instead of the whole history."""

    def __init__(self, policy: Policy, keep: int):
        self.policy, self.keep = policy, keep
        self.identity = f"{policy.identity}|keep_observations={keep}"
        self.server_batched = bool(getattr(policy, "server_batched", False))

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        return self.policy.complete([replace(r, messages=elide_observations(r.messages, self.keep)) for r in requests])


def student_view(policy: Policy, keep: int | None) -> Policy:
    return policy if keep is None else HistoryView(policy, keep)

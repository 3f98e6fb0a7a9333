"""What the student sees of the history: optionally only its last few turns, or only its last few
observations in full.

Agent episodes grow with every tool output (a pytest run is hundreds of tokens), and a small
student copies worst from far back in a long prompt. Like SWE-agent's "last N observations"
history processor, `elide_observations` keeps every action and the last `keep` observations, and
shortens older ones to their return code and a line count. `last_turns` goes further and keeps
only the task and the last N turns (action and observation): the student's state is then a
short window, so a step retried after an undo looks exactly as it did the first time, and what
the student learned there applies again. Only the student gets this view, in generation and in
fine-tuning alike; trajectories, labels and the teacher keep the full history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

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


def last_turns(messages: list[dict[str, str]], keep: int | None) -> list[dict[str, str]]:
    """The system and task messages and the last `keep` turns, each from its action on (None: all).

    Nothing marks the cut, so a window looks the same however many turns came before it."""
    if keep is None:
        return messages
    actions = [i for i, m in enumerate(messages) if i >= 2 and m["role"] == "assistant"]
    return messages if len(actions) <= keep else messages[:2] + messages[actions[-keep]:]


@dataclass(frozen=True)
class HistoryWindow:
    """How much of the history the student is shown (`student.keep_turns`, `student.keep_observations`)."""

    turns: int | None = None
    observations: int | None = None

    @classmethod
    def of(cls, student) -> HistoryWindow:
        """The window a `StudentConfig` asks for."""
        return cls(turns=student.keep_turns, observations=student.keep_observations)

    def apply(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        return elide_observations(last_turns(messages, self.turns), self.observations)

    @property
    def whole(self) -> bool:
        return self.turns is None and self.observations is None

    def __str__(self) -> str:
        return ",".join(f"keep_{name}={n}" for name, n in (("turns", self.turns), ("observations", self.observations))
                        if n is not None)


class HistoryView:
    """A student policy that is shown `window.apply(messages)` instead of the whole history."""

    def __init__(self, policy: Policy, window: HistoryWindow):
        self.policy, self.window = policy, window
        self.identity = f"{policy.identity}|{window}"
        self.server_batched = bool(getattr(policy, "server_batched", False))

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        return self.policy.complete([replace(r, messages=self.window.apply(r.messages)) for r in requests])


def student_view(policy: Policy, window: HistoryWindow) -> Policy:
    return policy if window.whole else HistoryView(policy, window)

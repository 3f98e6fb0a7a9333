"""The text protocol between the scaffold and a policy: one fenced bash block per response.

Text-based (not tool calls) so that tiny models trained from scratch can play.
"""

from __future__ import annotations

import re

SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
ACTION_REGEX = r"```bash\s*\n(.*?)\n```"
_ACTION = re.compile(ACTION_REGEX, re.DOTALL)
_RETURNCODE = re.compile(r"<returncode>(-?\d+)</returncode>")


def render_response(thought: str, command: str) -> str:
    return f"THOUGHT: {thought}\n\n```bash\n{command}\n```"


def extract_action(text: str) -> str | None:
    """The response's command, or None unless it holds exactly one fenced bash block."""
    actions = _ACTION.findall(text or "")
    return actions[0].strip() if len(actions) == 1 else None


EDIT_COMMAND = re.compile(r"\bsed\s+(-\w+\s+)*-i|\bgit\s+apply\b|\bpatch\b|>")
"""A command that edits files (in-place sed, git apply, patch, a redirect)."""
UNDO_COMMAND = re.compile(r"\bgit\s+(checkout|reset|stash)\b")
"""A command that takes changes back (git checkout, git reset, git stash)."""


def observation_returncode(observation: str) -> int | None:
    m = _RETURNCODE.search(observation or "")
    return int(m.group(1)) if m else None


def turns_of(messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(action, observation) pairs of a history, after the system and task messages."""
    out = []
    for i in range(2, len(messages) - 1):
        if messages[i]["role"] == "assistant" and messages[i + 1]["role"] == "user":
            out.append((extract_action(messages[i]["content"]) or "", messages[i + 1]["content"] or ""))
    return out


def last_test_since_edit(turns: list[tuple[str, str]]) -> int | None:
    """Return code of the last test run after the last editing command; None if none ran since."""
    result = None
    for action, observation in turns:
        if EDIT_COMMAND.search(action):
            result = None
        elif "pytest" in action:
            result = observation_returncode(observation)
    return result

"""The student's behaviour log-probs at the tokens training sees, for DistIL's importance ratio.

The rollout stores, per student turn, the tokens the student generated and its log-prob of each
(`Turn.token_ids`, `token_logp`); the label stage carries them into the student's rows
(`student_token_ids`, `student_token_logp`). Training re-renders each action through the chat
template, so a stored value is used only while the rendered completion's tokens are the very tokens
that were generated (its prefix is then the one the student saw); from the first token that differs
(text that re-tokenizes differently, such as a byte sequence cut mid-character; the end-of-turn a
generation cut by its length never produced) and where the policy gives no log-probs, they are NaN:
unknown.
"""

from __future__ import annotations

import math

import pandas as pd

from daggerlm.policies.history_view import HistoryWindow
from daggerlm.training.chat_masks import encode_example
from daggerlm.training.sft import examples_as_trained

Behaviour = dict[tuple[int, ...], list[float]]
"""An example's token ids -> the behaviour log-prob of each of its completion tokens (NaN: unknown)."""


def aligned(completion_ids: list[int], generated: list[int] | None, logp: list[float] | None) -> list[float]:
    """`logp` along the completion's tokens for as long as they are the generated ones, NaN after."""
    if generated is None or logp is None:
        return [math.nan] * len(completion_ids)
    same = 0
    for rendered, sampled in zip(completion_ids, list(generated)[:len(logp)]):
        if rendered != sampled:
            break
        same += 1
    return [float(v) for v in list(logp)[:same]] + [math.nan] * (len(completion_ids) - same)


def behaviour_logps(frame: pd.DataFrame, tokenizer, window: HistoryWindow = HistoryWindow()) -> Behaviour:
    """{token ids: behaviour log-probs} of the student-prefix examples of an aggregate that has them."""
    if "student_token_logp" not in frame:
        return {}
    examples = examples_as_trained(frame, window, "student")
    out: Behaviour = {}
    for index, prompt, completion in zip(examples.index, examples.prompt, examples.completion):
        ids, mask = encode_example(tokenizer, list(prompt), list(completion))
        start = mask.index(1)
        generated, logp = frame.at[index, "student_token_ids"], frame.at[index, "student_token_logp"]
        out.setdefault(tuple(ids), aligned(ids[start:], None if generated is None else list(generated),
                                           None if logp is None else list(logp)))
    return out


def known_share(behaviour: Behaviour) -> float | None:
    """The share of the student-prefix completion tokens whose behaviour log-prob is known."""
    values = [v for logp in behaviour.values() for v in logp]
    return sum(not math.isnan(v) for v in values) / len(values) if values else None

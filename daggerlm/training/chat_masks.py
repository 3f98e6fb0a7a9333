"""Training examples through the model's own chat template, and which of their tokens are trained.

An example is a DAgger state (the prompt: the task and the history so far) and the teacher's label
(the completion: one assistant message). Its tokens are the prompt rendered with the template's
generation prompt, token for token what the `hf` student is fed when it acts in that state, then the
text the template puts after it for the label, up to and including its end-of-turn marker. The loss
covers those label tokens only.

Why not TRL's `assistant_only_loss`: it trains on *every* assistant turn, but the earlier assistant
turns of a DAgger state are the student's own actions, right or wrong; only the label is a target.
It also needs `{% generation %}` markers, which most models' templates lack. The mask comes from
rendering prefixes instead: the prompt rendered with the generation prompt must be a prefix of the
prompt rendered with its label; a template that breaks this would train the student on a context it
never sees when it acts, so that stops with an error instead.
"""

from __future__ import annotations

import datasets

from daggerlm.errors import InputError


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """`messages` as text under the tokenizer's chat template."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)


def _ids(tokenizer, text: str) -> list[int]:
    # as apply_chat_template tokenizes: the template writes any BOS itself
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_example(tokenizer, prompt: list[dict], completion: list[dict]) -> tuple[list[int], list[int]]:
    """(input ids, completion mask) of one example: 1 on the label's tokens (with its end-of-turn), 0 elsewhere."""
    head = render(tokenizer, prompt, add_generation_prompt=True)
    full = render(tokenizer, prompt + completion)
    if not full.startswith(head):
        raise InputError(f"{tokenizer.name_or_path}: its chat template renders a prompt differently with the "
                         f"reply after it than with the generation prompt (…{head[-60:]!r} vs …"
                         f"{full[len(head) - 60:len(head)]!r}): a student trained on it would not see what it acts on")
    label = full[len(head):].rstrip()  # what follows the end-of-turn marker (a newline) is never generated
    head_ids, label_ids = _ids(tokenizer, head), _ids(tokenizer, label)
    return head_ids + label_ids, [0] * len(head_ids) + [1] * len(label_ids)


def encode_dataset(ds: datasets.Dataset, tokenizer, max_length: int | None) -> tuple[datasets.Dataset, int]:
    """The examples as TRL's pre-tokenized prompt-completion format (`input_ids`, `completion_mask`),
    without those longer than `max_length` (TRL would keep their start and cut the label); returns
    (dataset, how many were dropped)."""
    ids, masks = [], []
    for row in ds:
        example_ids, mask = encode_example(tokenizer, row["prompt"], row["completion"])
        if not max_length or len(example_ids) <= max_length:
            ids.append(example_ids)
            masks.append(mask)
    return datasets.Dataset.from_dict({"input_ids": ids, "completion_mask": masks}), len(ds) - len(ids)

"""A model's token entropy and log-probability on given completions: what the length curriculum gates
on (the student's entropy on its own actions) and what the objectives benchmark compares (the student's
entropy against the teacher's, the teacher's log-probability of the student's tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from daggerlm.policies.hf import load_model_and_tokenizer
from daggerlm.training.chat_masks import encode_example


@torch.no_grad()
def completion_token_stats(model_path: str, examples: list[tuple[list[dict], list[dict]]],
                           device: str = "cpu") -> dict:
    """Over the completion tokens of (prompt, completion) examples rendered as training renders them:
    the mean entropy (nats) of the model's next-token distribution, the mean log-probability it gives
    the completion's own tokens, and how many tokens there were."""
    model, tokenizer = load_model_and_tokenizer(model_path, device)
    entropy, logp_sum, count = 0.0, 0.0, 0
    for prompt, completion in examples:
        ids, mask = encode_example(tokenizer, prompt, completion)
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
        scored = torch.tensor(mask[1:], device=model.device).bool()
        logp = F.log_softmax(logits[scored], dim=-1)
        entropy += float(-(logp.exp() * logp).sum())
        logp_sum += float(logp.gather(-1, torch.tensor(ids[1:], device=model.device)[scored][:, None]).sum())
        count += logp.shape[0]
    return {"entropy": entropy / max(count, 1), "logp": logp_sum / max(count, 1), "tokens": count}


def mean_token_entropy(model_path: str, examples: list[tuple[list[dict], list[dict]]], device: str = "cpu") -> float:
    """The mean entropy (nats) over the completions' tokens (`completion_token_stats`)."""
    return completion_token_stats(model_path, examples, device)["entropy"]

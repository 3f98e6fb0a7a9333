"""The student's mean token entropy on its own actions: what the length curriculum gates on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from daggerlm.policies.hf import load_model_and_tokenizer
from daggerlm.training.chat_masks import encode_example


@torch.no_grad()
def mean_token_entropy(model_path: str, examples: list[tuple[list[dict], list[dict]]], device: str = "cpu") -> float:
    """Entropy (nats) of the model's next-token distribution, averaged over the completion tokens of
    (prompt, completion) examples rendered as training renders them."""
    model, tokenizer = load_model_and_tokenizer(model_path, device)
    total, count = 0.0, 0
    for prompt, completion in examples:
        ids, mask = encode_example(tokenizer, prompt, completion)
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
        logp = F.log_softmax(logits[torch.tensor(mask[1:], device=model.device).bool()], dim=-1)
        total += float(-(logp.exp() * logp).sum())
        count += logp.shape[0]
    return total / max(count, 1)

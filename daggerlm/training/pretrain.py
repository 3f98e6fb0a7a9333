"""Pretrain the tiny student as a language model on the family's text before any fine-tuning.

A real student arrives as a pretrained LLM that can already copy a name it has just read; a
randomly initialised one cannot, and a few hundred labeled states do not teach it (it then writes
the most frequent names instead of the one in the issue). A few minutes of next-token prediction on
repositories, issues, patches and oracle episodes of instances outside both splits gives the tiny
model that skill. Plain causal LM on packed windows; the checkpoint is rewritten atomically.
"""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

import torch
from rich.progress import Progress

from daggerlm.io import atomic_write_json


def pack(token_lists: list[list[int]], eos: int) -> torch.Tensor:
    return torch.tensor([t for ids in token_lists for t in [*ids, eos]], dtype=torch.long)


def pretrain(model_dir: str | Path, documents: list[str], *, steps: int, seq_len: int = 256, batch_size: int = 16,
             learning_rate: float = 3e-3, seed: int = 0, device: str = "cpu") -> dict:
    """Next-token prediction on random windows of the packed `documents` on `device`; overwrites `model_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from daggerlm.policies.hf import check_device

    check_device(device)
    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
    stream = pack([tokenizer(d, add_special_tokens=False)["input_ids"] for d in documents], tokenizer.eos_token_id)
    if len(stream) <= seq_len + 1:
        raise ValueError(f"pretraining corpus has {len(stream)} tokens, fewer than one window of {seq_len}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / steps))))
    model.train()
    losses = []
    with Progress(transient=True) as progress:
        bar = progress.add_task("pretrain", total=steps)
        for _ in range(steps):
            starts = [rng.randrange(len(stream) - seq_len - 1) for _ in range(batch_size)]
            batch = torch.stack([stream[s:s + seq_len] for s in starts]).to(device)
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            progress.update(bar, advance=1, description=f"pretrain loss {losses[-1]:.3f}")
    tmp = model_dir.with_name(model_dir.name + ".pretrain.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    model.save_pretrained(tmp)
    stats = {"steps": steps, "tokens": steps * batch_size * seq_len, "corpus_tokens": len(stream),
             "loss_first": sum(losses[:10]) / len(losses[:10]), "loss_last": sum(losses[-10:]) / len(losses[-10:])}
    atomic_write_json(tmp / "pretrain.json", stats)
    old = model_dir.with_name(model_dir.name + ".pretrain.old")
    shutil.rmtree(old, ignore_errors=True)
    model_dir.rename(old)
    tmp.rename(model_dir)
    shutil.rmtree(old)
    return stats

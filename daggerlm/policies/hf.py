"""The `hf` policy: a causal LM run in-process with transformers (CPU by default).

Loads a model directory or hub id, a PEFT adapter directory (its base is read from the adapter
config), or a base record (`checkpoints.resolve`); prompts are rendered by the model's own chat
template. Generation is batched (left padding, one `generate` call per batch) and each row
samples with its own generator seeded by the request, so an episode's tokens do not depend on the
other rows of its batch.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList
from transformers.utils import logging as hf_logging

from daggerlm.errors import InputError
from daggerlm.policies.base import Completion, PolicyRequest
from daggerlm.policies.checkpoints import checkpoint_fingerprint, is_path, resolve
from daggerlm.config import Sampling



class RowSampler(LogitsProcessor):
    """Samples each row with its own generator and leaves only the chosen token, so greedy search emits it."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.seeds, self.temperature, self.top_p = seeds, temperature, top_p
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > self.top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        if self.generators is None:  # on the scores' device: CUDA sampling needs a CUDA generator
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        out = torch.full_like(scores, float("-inf"))
        for row, gen in enumerate(self.generators):
            token = torch.multinomial(probs[row], 1, generator=gen)
            out[row, token] = 0.0
        return out


class BehaviourLogp(LogitsProcessor):
    """Records each row's log-prob of the token it emits, from the logits as the model gave them
    (temperature 1, before top-p, like vLLM's default `raw_logprobs`). The token chosen at step t is
    seen at step t+1, so only one step's log-probs are held (not generate's `output_logits`, which keeps
    every step's full vocabulary)."""

    def __init__(self):
        self.pending: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def _take(self, chosen: torch.Tensor) -> None:
        if self.pending is not None:
            self.steps.append(self.pending.gather(-1, chosen.unsqueeze(-1)).squeeze(-1))  # on device: no sync

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._take(input_ids[:, -1])
        self.pending = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def per_row(self, last: torch.Tensor) -> list[list[float]]:
        """Each row's log-probs, given the tokens of the last step."""
        self._take(last)
        self.pending = None
        return torch.stack(self.steps, dim=1).cpu().tolist() if self.steps else [[] for _ in range(len(last))]


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of `messages` under the tokenizer's chat template (some versions return a BatchEncoding)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    return ids["input_ids"] if hasattr(ids, "keys") else ids


def avoid_cudnn_attention() -> None:
    """Keep PyTorch's SDPA off its cuDNN kernel. On an H200 (torch 2.11) it built an execution plan at
    every decode step (15 ms a call in the profile), and in fresh processes that had generated in
    float32 first, bfloat16 generation of the tiny student ran at 565-699 tokens/s with it and
    6362-6585 without (`bench/training_devices.py`, README "GPU paths")."""
    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)


def check_device(device: str) -> None:
    """A device torch can use here, else one clear line (torch's own error names no setting)."""
    try:
        d = torch.device(device)
    except RuntimeError:
        raise InputError(f"student.device: '{device}' is not a torch device (expected cpu, cuda, cuda:N)") from None
    if d.type == "cuda" and (d.index or 0) >= torch.cuda.device_count():
        raise InputError(f"student.device: '{device}' but torch sees {torch.cuda.device_count()} CUDA device(s)")


def load_model_and_tokenizer(path: str, device: str = "cpu", dtype: str = "float32", trainable: bool = False):
    """A model directory, hub id, PEFT adapter directory or base record -> (model, tokenizer)."""
    check_device(device)
    avoid_cudnn_attention()
    path = resolve(path)
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{path}: expected a model directory")
    if not p.exists() and is_path(path):
        raise InputError(f"{path}: checkpoint not found")
    hf_logging.disable_progress_bar()  # weight-loading bars; training keeps its own
    torch_dtype = getattr(torch, dtype)
    if (p / "adapter_config.json").is_file():
        from peft import PeftModel

        base = resolve(json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"])
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
        model = PeftModel.from_pretrained(model, str(p), is_trainable=trainable)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:  # prompts and training masks are rendered by the model's own template
        raise InputError(f"{path}: its tokenizer has no chat template (use a chat/instruct model, or add one "
                         "to its tokenizer_config.json)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


class HFPolicy:
    def __init__(self, model: str, sampling: Sampling | None = None, max_prompt_tokens: int = 2048,
                 device: str = "cpu", dtype: str = "float32"):
        self.sampling = sampling or Sampling()
        self.max_prompt_tokens = max_prompt_tokens
        model = resolve(model)
        self.model, self.tokenizer = load_model_and_tokenizer(model, device, dtype)
        self.model.eval()
        self.device = device
        s = self.sampling
        self.identity = (f"hf:{model}@{checkpoint_fingerprint(model)}"
                         f"|t={s.temperature}|top_p={s.top_p}|max_new={s.max_new_tokens}")
        self._lock = threading.Lock()  # one generate at a time per model

    def _encode(self, requests: list[PolicyRequest]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        tok = self.tokenizer
        rows, truncated = [], []
        for r in requests:
            ids = chat_ids(tok, r.messages, add_generation_prompt=True)
            truncated.append(max(0, len(ids) - self.max_prompt_tokens))
            rows.append(ids[-self.max_prompt_tokens:])
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        return input_ids, mask, truncated

    @torch.no_grad()
    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        if not requests:
            return []
        s, tok = self.sampling, self.tokenizer
        input_ids, mask, truncated = self._encode(requests)
        behaviour = BehaviourLogp()
        processors = LogitsProcessorList([behaviour])  # first: it sees the logits before sampling
        if s.temperature > 0:
            seeds = [r.seed if r.seed is not None else 0 for r in requests]
            processors.append(RowSampler(seeds, s.temperature, s.top_p))
        with self._lock:
            out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                      max_new_tokens=s.max_new_tokens, do_sample=False, logits_processor=processors,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                      temperature=None, top_p=None, top_k=None)
        completions = []
        generated = out[:, input_ids.shape[1]:]
        for row, logp, cut in zip(generated.tolist(), behaviour.per_row(generated[:, -1]), truncated):
            n = next((i + 1 for i, t in enumerate(row) if t == tok.eos_token_id), None)
            body = row[:n] if n else row
            completions.append(Completion(
                tok.decode(body, skip_special_tokens=True),
                {"policy": self.identity, "completion_tokens": len(body), "prompt_truncated_tokens": cut,
                 "finish_reason": "stop" if n else "length"},
                token_ids=body, token_logp=[round(v, 6) for v in logp[:len(body)]]))
        return completions

"""Build the default student locally: a byte-level BPE tokenizer trained on the synthetic family's
text and a small Llama-architecture model with random weights (a few million parameters).

Nothing comes from a hub: the directory is written with `save_pretrained` and loads offline.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from daggerlm.io import atomic_write_json
from daggerlm.config import TinyModelConfig

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


IDENTIFIER_WORDS = Regex(r" ?[A-Za-z_][A-Za-z0-9_]*| ?[0-9]| ?[^\sA-Za-z0-9_]+|\s+(?!\S)|\s+")
"""Pre-tokenization: an identifier is one word (so `is_leap` can become one token and a student copies
it from the issue in one step), digits one at a time (line numbers copy digit by digit). (Splitting
punctuation from the space before it was tried and built a weaker student.)"""


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(IDENTIFIER_WORDS, behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, config: TinyModelConfig, corpus: list[str], seed: int = 0) -> Path:
    """Write tokenizer + randomly initialised model to `out_dir` (atomically: a temp dir renamed)."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_logging.disable_progress_bar()
    tokenizer = train_tokenizer(corpus, config.vocab_size)
    torch.manual_seed(seed)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    atomic_write_json(tmp / "daggerlm_checkpoint.json", {
        "format": "daggerlm.checkpoint/1", "kind": "init", "seed": seed, "config": config.model_dump(),
        "parameters": sum(p.numel() for p in model.parameters()), "corpus_texts": len(corpus)})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out

"""A user's own model, made here because no hub can be reached: a tiny Qwen2-architecture model with
random weights, a BPE tokenizer trained on synthetic instances with Qwen2's own pre-tokenizer (so
`AutoTokenizer`, which rebuilds it for `Qwen2Tokenizer`, keeps the same ids), and Qwen's real chat
template (as TRL ships it) written into tokenizer_config.json, as hub models ship it."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def qwen_template(name: str = "qwen2_5") -> str:
    """A Qwen chat template, verbatim (TRL keeps them to recognise models by their template)."""
    return (importlib.resources.files("trl") / "chat_templates" / f"{name}.jinja").read_text()


def save_user_model(out: Path, template: str = "qwen2_5", seed: int = 0) -> Path:
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from daggerlm.instances.synthetic import generate

    texts = [i.problem_statement + "\n" + "".join(i.repo_files.values()) for i in generate(10, "train", seed=5)]
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=QWEN_SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config.update(tokenizer_class="Qwen2Tokenizer", chat_template=qwen_template(template))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return out

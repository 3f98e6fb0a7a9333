"""A model's entropy and log-probability on completions: the numbers the curriculum gates on and the
objectives benchmark compares, checked against the model's own causal-LM loss and against a peaked twin."""

import math

import torch

from daggerlm.policies.hf import load_model_and_tokenizer
from daggerlm.training.chat_masks import encode_example
from daggerlm.training.entropy import completion_token_stats, mean_token_entropy

PROMPT = [{"role": "user", "content": "Fix is_leap in calendar.py."}]
EXAMPLES = [(PROMPT, [{"role": "assistant", "content": "THOUGHT: run the tests\n```bash\npytest -q\n```"}]),
            (PROMPT, [{"role": "assistant", "content": "THOUGHT: look\n```bash\nls\n```"}])]


def test_log_probability_is_minus_the_models_own_loss_on_the_completion_tokens(tiny_model_dir):
    stats = completion_token_stats(str(tiny_model_dir), EXAMPLES)
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), "cpu")
    nll, tokens = 0.0, 0
    for prompt, completion in EXAMPLES:
        ids, mask = encode_example(tokenizer, prompt, completion)
        labels = [t if m else -100 for t, m in zip(ids, mask)]
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        nll += float(loss) * sum(mask[1:])
        tokens += sum(mask[1:])
    assert stats["tokens"] == tokens > 0
    assert math.isclose(stats["logp"], -nll / tokens, rel_tol=1e-4)
    assert 0 < stats["entropy"] < math.log(len(tokenizer))
    assert mean_token_entropy(str(tiny_model_dir), EXAMPLES) == stats["entropy"]


def test_a_sharper_model_has_lower_entropy(tiny_model_dir, tmp_path):
    """The same weights with logits scaled up 4x (the final norm's gain): entropy must fall."""
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), "cpu")
    with torch.no_grad():
        model.model.norm.weight.mul_(4.0)
    model.save_pretrained(tmp_path / "sharp")
    tokenizer.save_pretrained(tmp_path / "sharp")
    plain = completion_token_stats(str(tiny_model_dir), EXAMPLES)["entropy"]
    assert completion_token_stats(str(tmp_path / "sharp"), EXAMPLES)["entropy"] < plain

"""A served teacher's top-k log-probs (vLLM's `prompt_logprobs`) against the same model in process."""

from __future__ import annotations

import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from daggerlm.config.training import ObjectiveConfig
from daggerlm.errors import InputError
from daggerlm.serving import vllm
from daggerlm.serving.process import free_port, managed_server
from daggerlm.training.chat_masks import encode_example
from daggerlm.training.divergence import Targets, objective_loss
from daggerlm.training.objective_trainer import teacher_targets
from tests.serving.test_vllm_contract import FAKE

PROMPT = [{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "Fix add() in calc.py."}]
LABEL = [{"role": "assistant", "content": "THOUGHT: look.\n\n```bash\ncat calc.py\n```"}]


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    vocab = len(AutoTokenizer.from_pretrained(tiny_model_dir))
    port = free_port()
    argv = [sys.executable, str(FAKE), "serve", str(tiny_model_dir), "--port", str(port),
            "--max-logprobs", str(vocab)]
    with managed_server(argv, port, tmp_path_factory.mktemp("s") / "s.log", health_path="/health",
                        timeout_s=60) as base_url:
        yield base_url, vocab


def test_top_k_served_with_the_whole_vocabulary_equals_the_in_process_teacher(served, tiny_model_dir):
    base_url, vocab = served
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, mask = encode_example(tokenizer, PROMPT, LABEL)
    scores = vllm.prompt_logprobs(base_url, str(tiny_model_dir), ids, vocab)
    assert len(scores.top_ids) == len(ids) - 1 and all(len(t) == vocab for t in scores.top_ids)
    labels = torch.tensor([ids[1:]])
    completion = torch.tensor([mask[1:]]).bool()
    served_targets = Targets("top_k", labels, token_logp=torch.tensor([scores.token_logp]),
                             top_ids=torch.tensor([scores.top_ids]), top_logp=torch.tensor([scores.top_logp]))
    teacher = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    objective = ObjectiveConfig(targets="top_k", k=vocab, alpha=0.5)
    local = teacher_targets(teacher, torch.tensor([ids]), None, labels, objective)
    torch.testing.assert_close(served_targets.token_logp[completion], local.token_logp[completion], atol=1e-4, rtol=0)
    student_logits = torch.randn(1, len(ids) - 1, vocab, generator=torch.Generator().manual_seed(0))
    for alpha in (1.0, 0.5, 0.0):
        ours = objective_loss(student_logits, completion, served_targets, alpha=alpha)[0]
        theirs = objective_loss(student_logits, completion, local, alpha=alpha)[0]
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_top_k_holds_the_k_most_likely_and_the_realized_token_is_scored_beyond_them(served, tiny_model_dir):
    base_url, _ = served
    ids, _ = encode_example(AutoTokenizer.from_pretrained(tiny_model_dir), PROMPT, LABEL)
    scores = vllm.prompt_logprobs(base_url, str(tiny_model_dir), ids, 3)
    assert all(len(t) == 3 and lp == sorted(lp, reverse=True) for t, lp in zip(scores.top_ids, scores.top_logp))
    assert any(tok not in top for tok, top in zip(ids[1:], scores.top_ids))  # a tiny model misses some tokens
    assert all(t <= top[0] + 1e-6 for t, top in zip(scores.token_logp, scores.top_logp))


def test_more_logprobs_than_the_server_allows_is_one_line(tmp_path, tiny_model_dir):
    port = free_port()
    argv = [sys.executable, str(FAKE), "serve", str(tiny_model_dir), "--port", str(port)]
    with managed_server(argv, port, tmp_path / "s.log", health_path="/health", timeout_s=60) as base_url:
        with pytest.raises(InputError) as e:
            vllm.prompt_logprobs(base_url, str(tiny_model_dir), [1, 2, 3], 21)
    assert str(e.value).endswith("HTTP 400: Requested prompt logprobs of 21, which is greater than max allowed: 20")
    assert "\n" not in str(e.value)

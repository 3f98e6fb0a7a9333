"""The hf student: offline loading, id round-trip, batch-independent seeded sampling, lockstep batching."""

import threading

import pytest
from transformers import AutoTokenizer

from daggerlm.agent.scaffold import first_messages
from daggerlm.errors import InputError
from daggerlm.policies import PolicyRequest, make_policy
from daggerlm.policies.batching import LockstepBatcher
from daggerlm.policies.hf import load_model_and_tokenizer
from daggerlm.config import Sampling


def test_tokenizer_round_trips_ids(tiny_model_dir, eval_instances):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    inst = eval_instances[0]
    for text in [inst.problem_statement, inst.patch, *inst.repo_files.values(),
                 "THOUGHT: ünïcode ✓\n\n```bash\nsed -i '9c\\    return x' f.py\n```"]:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
        assert tok(tok.decode(ids))["input_ids"] == ids
    assert tok.eos_token == "<|im_end|>"
    chat = tok.apply_chat_template(first_messages(inst), tokenize=False, add_generation_prompt=True)
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")


def _requests(instances, seeds):
    return [PolicyRequest(i, first_messages(i), {}, seed=s) for i, s in zip(instances, seeds)]


def test_sampling_is_seeded_per_request_not_per_batch(tiny_model_dir, eval_instances):
    policy = make_policy("hf", model=str(tiny_model_dir), sampling=Sampling(max_new_tokens=24))
    batch = _requests(eval_instances[:4], [11, 12, 13, 14])
    together = [c.text for c in policy.complete(batch)]
    alone = [policy.complete([r])[0].text for r in batch]
    reversed_ = [c.text for c in policy.complete(batch[::-1])][::-1]
    assert together == alone == reversed_
    assert len(set(together)) > 1  # different seeds, different samples
    other_seed = policy.complete(_requests(eval_instances[:1], [99]))[0].text
    assert other_seed != together[0]
    meta = policy.complete(batch[:1])[0].meta
    assert meta["completion_tokens"] <= 24 and meta["policy"] == policy.identity


def test_lockstep_batcher_makes_one_call_per_turn(tiny_model_dir, eval_instances):
    policy = make_policy("hf", model=str(tiny_model_dir), sampling=Sampling(max_new_tokens=8))
    batcher = LockstepBatcher(policy)
    requests = _requests(eval_instances[:4], [1, 2, 3, 4])
    batcher.register(len(requests))
    results = {}

    def worker(i):
        results[i] = batcher.complete([requests[i]])[0].text
        results[i, "second"] = batcher.complete([requests[i]])[0].text
        batcher.finish()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert batcher.batch_sizes == [4, 4]
    assert [results[i] for i in range(4)] == [c.text for c in policy.complete(requests)]


@pytest.mark.parametrize("device, message", [("cuda:99", "torch sees"), ("gpu", "not a torch device")])
def test_unusable_device_names_the_setting(tiny_model_dir, device, message):
    with pytest.raises(InputError, match=f"student.device: '{device}'.*{message}"):
        load_model_and_tokenizer(str(tiny_model_dir), device=device)


def test_missing_checkpoint_names_its_path(tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    with pytest.raises(InputError, match=f"{missing}: checkpoint not found"):
        make_policy("hf", model=str(missing))


def test_behaviour_logp_is_the_models_own_log_prob_of_each_generated_token(tiny_model_dir, eval_instances):
    """What an importance ratio divides by: the sampling model's temperature-1 log-prob of every token it
    emitted, the same whether the request was batched or alone."""
    import torch

    from daggerlm.policies.hf import chat_ids

    policy = make_policy("hf", model=str(tiny_model_dir), sampling=Sampling(temperature=0.7, max_new_tokens=16))
    batch = _requests(eval_instances[:3], [5, 6, 7])
    together = policy.complete(batch)
    for request, completion in zip(batch, together):
        assert len(completion.token_ids) == len(completion.token_logp) == completion.meta["completion_tokens"]
        assert policy.tokenizer.decode(completion.token_ids, skip_special_tokens=True) == completion.text
        prompt = chat_ids(policy.tokenizer, request.messages, add_generation_prompt=True)
        ids = torch.tensor([prompt + completion.token_ids])
        with torch.no_grad():
            logp = torch.log_softmax(policy.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float(), dim=-1)
        own = logp.gather(-1, torch.tensor(completion.token_ids).unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(own, torch.tensor(completion.token_logp), atol=1e-4)
        alone = policy.complete([request])[0]
        assert alone.token_ids == completion.token_ids
        assert torch.allclose(torch.tensor(alone.token_logp), torch.tensor(completion.token_logp), atol=1e-4)

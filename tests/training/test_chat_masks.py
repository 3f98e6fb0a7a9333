"""Training examples go through the model's own chat template: the prompt is token for token what the
student is fed when it acts, and the loss covers the teacher's label with its end-of-turn marker,
never the student's own earlier actions; TRL trains on exactly that mask."""

import pytest
from transformers import AutoTokenizer

from daggerlm.errors import InputError
from daggerlm.policies.hf import chat_ids
from daggerlm.training.chat_masks import encode_dataset, encode_example
from tests.user_model import qwen_template, save_user_model

STUDENT_ACTION = "THOUGHT: look around\n```bash\nls\n```"
LABEL = "THOUGHT: run the tests\n```bash\npytest -q\n```"
PROMPT = [{"role": "system", "content": "You are a helpful assistant that can interact with a computer."},
          {"role": "user", "content": "Fix is_leap in calendar.py."},
          {"role": "assistant", "content": STUDENT_ACTION},
          {"role": "user", "content": "<returncode>0</returncode>\ncalendar.py tests"}]
COMPLETION = [{"role": "assistant", "content": LABEL}]


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    return save_user_model(tmp_path_factory.mktemp("user") / "qwen")


def _split(tokenizer, ids, mask) -> tuple[str, str]:
    """(decoded untrained tokens, decoded trained tokens), special tokens kept."""
    return (tokenizer.decode([t for t, m in zip(ids, mask) if not m]),
            tokenizer.decode([t for t, m in zip(ids, mask) if m]))


def test_only_the_label_is_trained_and_the_prompt_is_what_the_student_sees(user_model):
    tokenizer = AutoTokenizer.from_pretrained(user_model)
    ids, mask = encode_example(tokenizer, PROMPT, COMPLETION)
    context, trained = _split(tokenizer, ids, mask)
    assert trained == LABEL + "<|im_end|>"  # the label and Qwen's end-of-turn, so the student learns to stop
    assert mask == sorted(mask)  # one trained span, at the end
    assert ids[: mask.index(1)] == chat_ids(tokenizer, PROMPT, add_generation_prompt=True)
    assert context.endswith("calendar.py tests<|im_end|>\n<|im_start|>assistant\n")
    assert f"<|im_start|>assistant\n{STUDENT_ACTION}<|im_end|>" in context  # its own action: context only


def test_the_mask_follows_each_models_template(user_model):
    """Qwen3's template writes an empty thinking block before the last reply: it is part of what the
    student must produce after the generation prompt, so it is trained with the label."""
    tokenizer = AutoTokenizer.from_pretrained(user_model)
    tokenizer.chat_template = qwen_template("qwen3")
    ids, mask = encode_example(tokenizer, PROMPT, COMPLETION)
    assert _split(tokenizer, ids, mask)[1] == "<think>\n\n</think>\n\n" + LABEL + "<|im_end|>"
    # a template that renders the context differently once the reply follows cannot train this student
    tokenizer.chat_template = ("{% for m in messages %}{{ m.role }}{% if loop.last and m.role == 'assistant' %}!"
                               "{% endif %}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: "
                               "{% endif %}")
    with pytest.raises(InputError, match="renders a prompt differently"):
        encode_example(tokenizer, PROMPT, COMPLETION)


def test_trl_trains_on_this_mask(user_model, tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(user_model)
    too_long = [{"role": "assistant", "content": "x" * 900}]
    rows = datasets.Dataset.from_list([{"prompt": PROMPT, "completion": COMPLETION},
                                       {"prompt": PROMPT[:2], "completion": too_long}])
    encoded, dropped = encode_dataset(rows, tokenizer, max_length=200)
    assert dropped == 1 and len(encoded) == 1  # too long: dropped, not cut
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(user_model), train_dataset=encoded,
                         processing_class=tokenizer,
                         args=SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, use_cpu=True,
                                        report_to=[], bf16=False))
    labels = trainer.train_dataset[0]["labels"]
    ids, mask = encode_example(tokenizer, PROMPT, COMPLETION)
    assert labels == [t if m else -100 for t, m in zip(ids, mask)]
    assert tokenizer.decode([t for t in labels if t != -100]) == LABEL + "<|im_end|>"

"""Language-model pretraining of the tiny student on the family's text."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from daggerlm.training.tiny_student import corpus_document
from daggerlm.instances.synthetic import generate
from daggerlm.training.pretrain import pack, pretrain


def _lm_loss(model_dir, documents):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = pack([tok(d, add_special_tokens=False)["input_ids"] for d in documents], tok.eos_token_id)[:512]
    with torch.no_grad():
        return float(model(input_ids=ids[None], labels=ids[None]).loss)


def test_pretraining_lowers_language_model_loss_on_held_out_documents(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "student"
    shutil.copytree(tiny_model_dir, model_dir)
    train_docs = [corpus_document(i) for i in generate(20, "train", seed=3)]
    held_out = [corpus_document(i) for i in generate(3, "train", seed=4)]
    before = _lm_loss(model_dir, held_out)
    stats = pretrain(model_dir, train_docs, steps=40, seq_len=64, batch_size=8, learning_rate=3e-3)
    after = _lm_loss(model_dir, held_out)
    assert after < before - 1.0, (before, after)
    assert stats["loss_last"] < stats["loss_first"] and stats["tokens"] == 40 * 8 * 64
    assert json.loads((model_dir / "pretrain.json").read_text())["steps"] == 40
    assert not list(tmp_path.glob("student.pretrain*"))  # no temporary directory left behind
    with pytest.raises(ValueError, match="fewer than one window"):
        pretrain(model_dir, ["x"], steps=1, seq_len=64)

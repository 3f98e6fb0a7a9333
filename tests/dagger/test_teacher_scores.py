"""A served teacher's log-probs: scored in the label stage as training renders each state, stored with
the labels, cached, and trained on exactly as the same model in process would be."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from daggerlm.config import record_reads
from daggerlm.dagger import pipeline
from daggerlm.errors import InputError
from daggerlm.serving.process import free_port, managed_server
from tests.conftest import tiny_params
from tests.dagger.test_loop import undeclared
from tests.serving.test_vllm_contract import FAKE


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """The fake vLLM serving the tiny model, every id of its vocabulary available as a prompt logprob."""
    vocab = len(AutoTokenizer.from_pretrained(tiny_model_dir))
    port = free_port()
    argv = [sys.executable, str(FAKE), "serve", str(tiny_model_dir), "--port", str(port), "--max-logprobs", str(vocab)]
    with managed_server(argv, port, tmp_path_factory.mktemp("s") / "s.log", health_path="/health",
                        timeout_s=60) as base_url:
        yield base_url, vocab


def run(p, name: str, k: int | None = None) -> tuple[dict, set[str]]:
    stage = pipeline.BY_NAME[name]
    with record_reads(p) as seen:
        result = stage.run(p) if k is None else stage.run(p, k)
    assert not undeclared(stage, seen), f"{name} reads {undeclared(stage, seen)}"
    return result, seen


def another_student(teacher_dir, out):
    """The teacher's tokenizer, perturbed weights: a student whose distribution differs from the teacher's."""
    model = AutoModelForCausalLM.from_pretrained(teacher_dir)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            weight.add_(torch.randn(weight.shape, generator=generator) * 0.05)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(out)
    return out


def test_served_scores_are_stored_cached_and_train_as_the_in_process_teacher(served, tiny_model_dir, tmp_path):
    base_url, vocab = served
    objective = {"prefix": "student", "targets": "top_k", "k": vocab, "alpha": 0.5, "temperature": 2.0, "gamma": 0.5}
    student = another_student(tiny_model_dir, tmp_path / "student")
    common = {"student.model": str(student), "student.build_tiny": False, "dagger.iterations": 1,
              "dagger.beta": {"kind": "constant", "value": 0.5}, "train.objective": objective}
    p = tiny_params(tmp_path, **common, **{"teacher.kind": "openai", "teacher.endpoint": {
        "base_url": base_url, "model": str(tiny_model_dir), "logprobs": True}})
    for name in ("instances", "init-model"):
        run(p, name)
    run(p, "rollout", 0)
    stats, reads = run(p, "label", 0)
    assert "train.objective.k" in reads
    assert stats["score_calls"] == stats["scored_states"] == stats["student_states"] > 0

    labels = pd.read_parquet(tmp_path / "data" / "labels" / "iter_0" / "labels.parquet")
    student = labels[labels.actor == "student"]
    assert labels[labels.actor == "teacher"].input_ids.isna().all() and student.input_ids.notna().all()
    for ids, token, top_ids in zip(student.input_ids, student.teacher_token_logp, student.teacher_top_ids):
        assert 0 < len(token) == len(top_ids) < len(ids) and all(len(t) == vocab for t in top_ids)
    again, _ = run(p, "label", 0)  # every score is in the cache now
    assert again["score_calls"] == 0 and again["score_hits"] == stats["scored_states"]

    run(p, "aggregate", 0)
    served_meta, _ = run(p, "train", 0)
    in_process = tiny_params(tmp_path, **common, **{"teacher.kind": "hf", "teacher.model": str(tiny_model_dir)})
    local_meta, _ = run(in_process, "train", 0)
    assert served_meta["objective_stats"]["forward_kl"] > 0.01  # the student is not the teacher
    for name in ("forward_kl", "reverse_kl", "entropy"):
        assert served_meta["objective_stats"][name] == pytest.approx(local_meta["objective_stats"][name], rel=1e-3)
    assert served_meta["train_loss"] == pytest.approx(local_meta["train_loss"], rel=1e-3, abs=1e-5)
    assert served_meta["loss_after"] == pytest.approx(local_meta["loss_after"], rel=1e-3)

    teacher_prefix = {**objective, "prefix": "teacher", "gamma": 0}
    other_prefix = tiny_params(tmp_path, **{**common, "train.objective": teacher_prefix}, **{
        "teacher.kind": "openai", "teacher.endpoint": {"base_url": base_url, "logprobs": True}})
    with pytest.raises(InputError, match=r"train.parquet: \d+ of \d+ examples have no teacher scores for their token"):
        run(other_prefix, "train", 0)
    meta = json.loads((tmp_path / "data" / "checkpoints" / "iter_1" / "daggerlm_checkpoint.json").read_text())
    assert meta["config"]["objective"]["k"] == vocab  # the failed run left the checkpoint as it was

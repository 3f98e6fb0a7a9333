"""Fine-tuning on an aggregate lowers its loss and makes the student act like its labels."""

import json

import pandas as pd
import pytest
import torch

from daggerlm.actions import extract_action
from daggerlm.dagger.aggregate import write_parquet
from daggerlm.errors import InputError
from daggerlm.policies import PolicyRequest, make_policy
from daggerlm.config import Sampling
from daggerlm.config import TrainConfig
from daggerlm.policies.history_view import HistoryWindow
from daggerlm.training.sft import load_aggregate, precision, train
from tests.helpers import oracle_aggregate

SFT = {"num_train_epochs": 50, "learning_rate": 0.003, "per_device_train_batch_size": 8, "max_length": 2048,
       "logging_steps": 100, "disable_tqdm": True, "gradient_checkpointing": False}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A little wider than the session's tiny model, so 50 epochs make it imitate its labels."""
    from daggerlm.dagger.stages import stage_init_model
    from tests.conftest import TINY, tiny_params

    p = tiny_params(tmp_path_factory.mktemp("small"),
                    **{"student.tiny": {**TINY, "hidden_size": 128, "intermediate_size": 256, "vocab_size": 1024}})
    stage_init_model(p)
    return p.student.model


@pytest.fixture(scope="module")
def aggregate(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    rows = oracle_aggregate(root)
    write_parquet(root / "train.parquet", pd.DataFrame(rows))
    return root / "train.parquet", rows


def _greedy_matches(model_dir, rows) -> int:
    policy = make_policy("hf", model=str(model_dir), sampling=Sampling(temperature=0, max_new_tokens=64))
    outs = policy.complete([PolicyRequest(None, r["prompt"], {}) for r in rows])
    return sum(extract_action(o.text) == extract_action(r["completion"][0]["content"]) for o, r in zip(outs, rows))


def test_full_fine_tuning_lowers_loss_and_imitates_labels(aggregate, small_model, tmp_path):
    path, rows = aggregate
    meta = train(path, small_model, tmp_path / "ck", TrainConfig(sft=SFT), seed=0, aggregate_hash="h")
    assert meta["loss_before"] > 5.0 and meta["loss_after"] < 0.2, meta
    saved = json.loads((tmp_path / "ck" / "daggerlm_checkpoint.json").read_text())
    assert saved["aggregate_hash"] == "h" and saved["examples"] == len(rows)
    assert saved["config"]["sft"] == TrainConfig(sft=SFT).sft
    assert saved["precision"] == ("bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
                                  else "float32")
    before, after = _greedy_matches(small_model, rows), _greedy_matches(tmp_path / "ck", rows)
    assert before == 0 and after >= len(rows) * 3 // 4, (before, after)


def test_lora_adapter_trains_and_loads(aggregate, tiny_model_dir, tmp_path):
    path, _ = aggregate
    cfg = TrainConfig(mode="lora", sft={**SFT, "num_train_epochs": 3},
                      lora={"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"})
    meta = train(path, str(tiny_model_dir), tmp_path / "lora", cfg, window=HistoryWindow(turns=2, observations=1))
    assert (meta["keep_turns"], meta["keep_observations"]) == (2, 1)
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    assert not (tmp_path / "lora" / "model.safetensors").exists()
    assert meta["loss_after"] < meta["loss_before"]
    policy = make_policy("hf", model=str(tmp_path / "lora"), sampling=Sampling(max_new_tokens=4))
    assert policy.identity.startswith(f"hf:{tmp_path / 'lora'}@")


def test_the_student_trains_on_prompts_as_it_sees_them(aggregate):
    """Through a window, old turns are cut and old tool outputs shortened in training as in generation."""
    path, rows = aggregate
    full = load_aggregate(path)
    assert full["prompt"] == [r["prompt"] for r in rows]
    for window in (HistoryWindow(observations=1), HistoryWindow(turns=1)):
        shown = load_aggregate(path, window)
        assert full["completion"] == shown["completion"]
        assert shown["prompt"] == [window.apply(r["prompt"]) for r in rows]
        assert any(s != f for s, f in zip(shown["prompt"], full["prompt"]))


def test_bad_training_input(aggregate, tiny_model_dir, tmp_path):
    path, _ = aggregate
    with pytest.raises(InputError, match="train.sft: unknown key 'epochs'"):
        train(path, str(tiny_model_dir), tmp_path / "x", TrainConfig(sft={"epochs": 1}))
    with pytest.raises(InputError, match="nope.parquet: aggregate not found"):
        train(tmp_path / "nope.parquet", str(tiny_model_dir), tmp_path / "x", TrainConfig())
    assert not (tmp_path / "x").exists()


def test_precision_is_float32_unless_a_bfloat16_gpu_or_the_user_says_otherwise():
    assert precision({}, on_gpu=False, gpu_bf16=False) == {"bf16": False, "fp16": False}  # not TRL's bf16=True
    assert precision({}, on_gpu=True, gpu_bf16=True) == {"bf16": True, "fp16": False}
    assert precision({}, on_gpu=True, gpu_bf16=False) == {"bf16": False, "fp16": False}
    assert precision({"bf16": True}, on_gpu=False, gpu_bf16=False) == {}
    assert precision({"fp16": True}, on_gpu=True, gpu_bf16=True) == {}

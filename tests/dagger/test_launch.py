"""The train stage under `accelerate launch` with two CPU processes (gloo, `infra/accelerate/cpu-2proc.yaml`):
the same loss curve as one process at the same effective batch, and a checkpoint that loads and generates."""

import json
import shutil

import pandas as pd
import pytest

from daggerlm.config import Sampling
from daggerlm.dagger.aggregate import write_parquet
from daggerlm.dagger.stages import layout, stage_train
from daggerlm.errors import InputError
from daggerlm.policies import PolicyRequest, make_policy
from tests.conftest import REPO, tiny_params
from tests.helpers import oracle_aggregate

TWO_CPU_PROCESSES = str(REPO / "infra" / "accelerate" / "cpu-2proc.yaml")
TOLERANCE = 1e-3
"""Largest difference allowed between the two loss curves, step by step (float32 sums in another order)."""


@pytest.fixture(scope="module")
def aggregate(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    write_parquet(root / "train.parquet", pd.DataFrame(oracle_aggregate(root)[:16]))
    return root / "train.parquet"


def _train(tmp_path, name, aggregate, tiny_model_dir, launch, batch, accumulation):
    p = tiny_params(tmp_path / name, **{
        "student.model": str(tiny_model_dir), "student.build_tiny": False, "train.launch": launch,
        "train.sft": {"num_train_epochs": 2, "learning_rate": 3e-3, "per_device_train_batch_size": batch,
                      "gradient_accumulation_steps": accumulation, "logging_steps": 1, "lr_scheduler_type": "constant",
                      "warmup_steps": 0, "disable_tqdm": True}})
    lay = layout(p)
    lay.aggregated(0).mkdir(parents=True)
    shutil.copy(aggregate, lay.aggregated(0) / "train.parquet")
    (lay.aggregated(0) / "stats.json").write_text(json.dumps({"hash": "h"}))
    shutil.copytree(tiny_model_dir, lay.checkpoint(0))
    return stage_train(p, 0), lay.checkpoint(1)


def test_two_processes_follow_one_process_at_the_same_effective_batch(aggregate, tiny_model_dir, tmp_path):
    one, _ = _train(tmp_path, "one", aggregate, tiny_model_dir, None, 2, 2)
    two, checkpoint = _train(tmp_path, "two", aggregate, tiny_model_dir, TWO_CPU_PROCESSES, 2, 1)
    assert (one["processes"], two["processes"]) == (1, 2)
    assert [s for s, _ in one["loss_curve"]] == [s for s, _ in two["loss_curve"]] and len(one["loss_curve"]) == 8
    gaps = [abs(a - b) for (_, a), (_, b) in zip(one["loss_curve"], two["loss_curve"])]
    print("loss curves", one["loss_curve"], two["loss_curve"], "largest gap", max(gaps))
    assert max(gaps) < TOLERANCE
    # a negative control: twice the effective batch is another curve, beyond the tolerance
    wide, _ = _train(tmp_path, "wide", aggregate, tiny_model_dir, TWO_CPU_PROCESSES, 4, 1)
    assert wide["processes"] == 2 and len(wide["loss_curve"]) == 4
    assert abs(wide["loss_curve"][-1][1] - one["loss_curve"][3][1]) > 10 * TOLERANCE
    policy = make_policy("hf", model=str(checkpoint), sampling=Sampling(temperature=0, max_new_tokens=8))
    prompt = [{"role": "user", "content": "Fix the bug."}]
    assert policy.complete([PolicyRequest(None, prompt, {})])[0].text  # the checkpoint loads and generates


def test_a_missing_launch_config_is_one_clear_line(aggregate, tiny_model_dir, tmp_path):
    with pytest.raises(InputError, match=r"^train.launch: /nope.yaml: accelerate config file not found$"):
        _train(tmp_path, "bad", aggregate, tiny_model_dir, "/nope.yaml", 2, 1)

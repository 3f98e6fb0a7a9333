"""Fine-tuning under the distillation objectives: TRL's SFT by default, an in-process teacher otherwise."""

import shutil

import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from daggerlm.config import TrainConfig
from daggerlm.config.training import ObjectiveConfig
from daggerlm.dagger.aggregate import write_parquet
from daggerlm.errors import InputError
from daggerlm.training.sft import load_aggregate, train
from tests.training.test_sft import SFT, aggregate  # noqa: F401  (the module's aggregate fixture)

# ruff: noqa: F811  (pytest passes the imported `aggregate` fixture by name)

FEW = {**SFT, "num_train_epochs": 3, "logging_steps": 1}


@pytest.fixture(scope="module")
def teacher(aggregate, tiny_model_dir, tmp_path_factory):
    """The tiny student fine-tuned on the labels: a teacher that shares its tokenizer and differs from it."""
    out = tmp_path_factory.mktemp("teacher") / "ck"
    train(aggregate[0], str(tiny_model_dir), out, TrainConfig(sft={**SFT, "num_train_epochs": 10}))
    return str(out)


def _trainer(aggregate_path, model_dir, objective, teacher_dir=None):
    from trl import SFTConfig

    from daggerlm.policies.hf import load_model_and_tokenizer
    from daggerlm.training.chat_masks import encode_dataset
    from daggerlm.training.objective_trainer import ObjectiveTrainer

    model, tokenizer = load_model_and_tokenizer(str(model_dir), trainable=True)
    ds, _ = encode_dataset(load_aggregate(aggregate_path, prefix=objective.prefix), tokenizer, 2048)
    args = SFTConfig(output_dir="/tmp/unused", report_to=[], completion_only_loss=True, use_cpu=True, bf16=False,
                     per_device_train_batch_size=4, dataset_num_proc=None)
    teacher_model = load_model_and_tokenizer(teacher_dir)[0] if teacher_dir else None
    return ObjectiveTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                            objective=objective, teacher=teacher_model)


def test_the_default_objective_is_trl_sft_and_the_objective_path_computes_the_same_loss(aggregate,
                                                                                         tiny_model_dir):
    trainer = _trainer(aggregate[0], tiny_model_dir, ObjectiveConfig())
    assert trainer.objective.is_sft and trainer.teacher is None
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trl_loss = trainer.compute_loss(trainer.model, dict(batch))  # SFTTrainer's own (fused LM head)
    ours, _ = trainer.objective_loss(trainer.model, dict(batch))
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)


def test_under_several_processes_the_objective_path_scales_its_loss_as_trl_does(aggregate, tiny_model_dir,
                                                                                  monkeypatch):
    """With the token count summed over 2 processes (DDP averages their gradients), Trainer scales each
    process's loss by 2; the objective path must too, or its gradients would be half of SFT's."""
    trainer = _trainer(aggregate[0], tiny_model_dir, ObjectiveConfig())
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    tokens = int((batch["labels"][:, 1:] != -100).sum())
    monkeypatch.setattr(type(trainer.accelerator), "num_processes", property(lambda self: 2))
    trl_loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=torch.tensor(2 * tokens))
    monkeypatch.setattr(ObjectiveConfig, "is_sft", property(lambda self: False))  # the same CE, our path
    ours = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=torch.tensor(2 * tokens))
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)
    single, _ = trainer.objective_loss(trainer.model, dict(batch))  # this process's tokens only
    torch.testing.assert_close(ours, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("targets,alpha", [("full", 0.5), ("top_k", 1.0), ("hard", 0.0)])
def test_an_in_process_teacher_pulls_the_student_towards_its_distribution(aggregate, tiny_model_dir, teacher,
                                                                          targets, alpha, tmp_path):
    objective = ObjectiveConfig(targets=targets, alpha=alpha, k=8)
    meta = train(aggregate[0], str(tiny_model_dir), tmp_path / "ck", TrainConfig(sft=FEW, objective=objective),
                 teacher_model=teacher)
    assert meta["config"]["objective"]["targets"] == targets
    logged = meta["objective_stats"]
    assert {"forward_kl", "reverse_kl", "entropy"} <= set(logged)
    # the student ends closer to the teacher than it started: its tokens' loss under the labels falls too
    assert meta["loss_after"] < meta["loss_before"]


def test_divergence_to_the_teacher_falls_during_distillation(aggregate, tiny_model_dir, teacher, tmp_path):
    trainer = _trainer(aggregate[0], tiny_model_dir, ObjectiveConfig(targets="full", alpha=0.5), teacher)
    trainer.args.num_train_epochs, trainer.args.logging_steps, trainer.args.learning_rate = 4, 1, 3e-3
    trainer.train()
    kl = [h["forward_kl"] for h in trainer.state.log_history if "forward_kl" in h]
    rkl = [h["reverse_kl"] for h in trainer.state.log_history if "reverse_kl" in h]
    assert kl[-1] < kl[0] / 2 and rkl[-1] < rkl[0] / 2, (kl, rkl)


def test_student_prefix_scores_the_students_own_actions(aggregate, tmp_path):
    frame = pd.read_parquet(aggregate[0])
    frame["student_response"] = [f"acted {i}" if i % 2 else None for i in range(len(frame))]
    write_parquet(tmp_path / "a.parquet", frame)
    shown = load_aggregate(tmp_path / "a.parquet", prefix="student")
    assert [c[0]["content"] for c in shown["completion"]] == [f"acted {i}" for i in range(1, len(frame), 2)]
    write_parquet(tmp_path / "b.parquet", frame.drop(columns="student_response"))
    with pytest.raises(InputError, match="b.parquet: no student_response column"):
        load_aggregate(tmp_path / "b.parquet", prefix="student")


def test_a_teacher_with_another_vocabulary_is_refused(aggregate, tiny_model_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<not-in-the-student>"])
    tokenizer.save_pretrained(other)
    with pytest.raises(InputError, match="its tokenizer differs from the student's"):
        train(aggregate[0], str(tiny_model_dir), tmp_path / "ck",
              TrainConfig(sft=FEW, objective=ObjectiveConfig(targets="full")), teacher_model=str(other))
    assert not (tmp_path / "ck").exists()

"""Fine-tune the student on an aggregate with TRL's SFTTrainer, the loss on the teacher's labels only.

Examples are tokenized here through the model's own chat template (`chat_masks`) and handed to TRL
pre-tokenized. Full fine-tuning or LoRA (PEFT; one adapter per iteration, on the base model named in
its adapter_config.json), starting from the base model or the previous checkpoint. The checkpoint
directory is written to a temporary name and renamed when complete; it holds the model (or adapter),
the tokenizer and `daggerlm_checkpoint.json` with the config, the aggregate's hash and the loss on
the aggregate before and after training.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path

import datasets
import pandas as pd
import torch
from transformers import set_seed
from transformers.utils import logging as hf_logging

from daggerlm.errors import InputError
from daggerlm.io import atomic_write_json
from daggerlm.policies.checkpoints import CHECKPOINT_META
from daggerlm.policies.hf import load_model_and_tokenizer
from daggerlm.policies.history_view import HistoryWindow
from daggerlm.training.chat_masks import encode_dataset
from daggerlm.config import TrainConfig


def examples_as_trained(frame: pd.DataFrame, window: HistoryWindow = HistoryWindow(),
                        prefix: str = "teacher") -> pd.DataFrame:
    """Labeled states as training sees them: the prompt through the student's window (`student.keep_turns`,
    `student.keep_observations`), the completion the teacher's label or (`prefix: student`) the student's
    own action, at the states it acted in (the teacher's have none and are left out); the index is kept."""
    if prefix == "student":
        if "student_response" not in frame:
            raise InputError("no student_response column (the label stage writes it); prefix: student needs it")
        frame = frame[frame.student_response.notna()].copy()
        frame["completion"] = [[{"role": "assistant", "content": r}] for r in frame.student_response]
    frame = frame[["prompt", "completion"]].copy()
    if not window.whole:
        frame["prompt"] = [window.apply([dict(m) for m in prompt]) for prompt in frame.prompt]
    return frame


def load_aggregate(path: Path, window: HistoryWindow = HistoryWindow(), prefix: str = "teacher") -> datasets.Dataset:
    """The aggregate's examples as training sees them (`examples_as_trained`)."""
    if not path.is_file():
        raise InputError(f"{path}: aggregate not found")
    try:
        frame = examples_as_trained(pd.read_parquet(path), window, prefix)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    if frame.empty:
        raise InputError(f"{path}: no example" + ("; prefix: student needs states the student acted in (β < 1)"
                                                   if prefix == "student" else ""))
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


@torch.no_grad()
def completion_loss(model, encoded: datasets.Dataset) -> float:
    """Mean token NLL of the labels given their prompts (what SFT minimises), on `chat_masks` examples."""
    model.eval()
    total, count = 0.0, 0
    for row in encoded:
        ids = torch.tensor([row["input_ids"]], device=model.device)
        labels = ids.masked_fill(torch.tensor([row["completion_mask"]], device=model.device) == 0, -100)
        n = int((labels[0, 1:] != -100).sum())
        total += float(model(input_ids=ids, labels=labels).loss) * n
        count += n
    return total / max(count, 1)


def precision(sft: dict, on_gpu: bool, gpu_bf16: bool) -> dict:
    """bf16/fp16 for trl.SFTConfig where `train.sft` sets neither. TRL turns bf16 on by default, which
    on a CPU without native bfloat16 matmuls (AVX2 only, e.g. AMD EPYC) runs them through a generic
    kernel: fine-tuning the science check's student took 16x longer there than in float32
    (`bench/sft_precision.py`). So: bfloat16 only on a GPU that supports it, float32 otherwise."""
    if "bf16" in sft or "fp16" in sft:
        return {}
    return {"bf16": on_gpu and gpu_bf16, "fp16": False}


def train(aggregate: str | Path, init_model: str, out_dir: str | Path, config: TrainConfig, seed: int = 0,
          aggregate_hash: str = "", base_model: str | None = None, window: HistoryWindow = HistoryWindow(),
          teacher_model: str | None = None, scores: dict | None = None) -> dict:
    """Fine-tune `init_model` on `aggregate`, its prompts shown through the student's `window`, under
    `config.objective` (an in-process `teacher_model` gives the soft targets, or a served teacher's
    `scores`, stored with the labels); write the checkpoint to
    `out_dir`; return its metadata."""
    from peft import LoraConfig
    from trl import SFTConfig

    from daggerlm.training.objective_trainer import ObjectiveTrainer, check_same_tokenizer, check_scores_cover

    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    set_seed(seed)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    writer = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, rank 0 writes the checkpoint
    if writer:
        shutil.rmtree(tmp, ignore_errors=True)
    on_gpu = torch.cuda.is_available()
    model, tokenizer = load_model_and_tokenizer(init_model, "cuda" if on_gpu else "cpu", trainable=True)
    if config.mode == "full" and hasattr(model, "peft_config"):  # from a LoRA checkpoint: train all weights
        model = model.merge_and_unload().requires_grad_(True)  # PEFT froze the base's weights
    objective = config.objective
    ds, dropped = encode_dataset(load_aggregate(Path(aggregate), window, objective.prefix), tokenizer,
                                 config.sft.get("max_length", 1024))
    if len(ds) == 0:
        raise InputError(f"{aggregate}: no example fits train.sft.max_length={config.sft.get('max_length')}")
    teacher = None
    if objective.teacher_needs() and teacher_model:
        teacher, teacher_tokenizer = load_model_and_tokenizer(teacher_model, str(model.device))
        check_same_tokenizer(tokenizer, teacher_tokenizer, teacher_model)
    elif objective.teacher_needs() and scores is not None:  # a served teacher's, stored with the labels
        check_scores_cover(scores, ds["input_ids"], str(aggregate))
    loss_before = completion_loss(model, ds)
    fixed = {"output_dir": str(tmp / "trainer"), "save_strategy": "no", "report_to": [], "seed": seed,
             "completion_only_loss": True, "use_cpu": not on_gpu, "dataset_num_proc": None}
    known = {f.name for f in dataclasses.fields(SFTConfig)}
    if unknown := sorted(set(config.sft) - known):
        raise InputError(f"train.sft: unknown key '{unknown[0]}' (not a field of trl.SFTConfig)")
    args = SFTConfig(**{**precision(config.sft, on_gpu, on_gpu and torch.cuda.is_bf16_supported()),
                        **config.sft, **fixed})
    peft_config = None
    if config.mode == "lora" and not hasattr(model, "peft_config"):
        peft_config = LoraConfig(task_type="CAUSAL_LM", **config.lora)
    behaviour, behaviour_known = {}, None
    if objective.gamma > 0:  # DistIL's importance ratio
        from daggerlm.training.behaviour import behaviour_logps, known_share

        behaviour = behaviour_logps(pd.read_parquet(aggregate), tokenizer, window)
        behaviour_known = known_share(behaviour)
    trainer = ObjectiveTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                               peft_config=peft_config, objective=objective, teacher=teacher, scores=scores,
                               behaviour=behaviour)
    result = trainer.train()
    if not writer:
        return {}
    model = trainer.model
    loss_after = completion_loss(model, ds)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    meta = {"format": "daggerlm.checkpoint/1", "kind": config.mode, "init_model": init_model,
            "base_model": base_model or init_model, "aggregate": str(aggregate), "aggregate_hash": aggregate_hash,
            "examples": len(ds), "dropped_too_long": dropped, "keep_turns": window.turns,
            "keep_observations": window.observations,
            "seed": seed, "config": config.model_dump(),
            "precision": "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32",
            "train_loss": result.training_loss, "objective_stats": trainer.means(),
            "behaviour_known": behaviour_known,
            "loss_before": loss_before, "loss_after": loss_after,
            "steps": result.global_step, "processes": trainer.accelerator.num_processes,
            "loss_curve": [[row["step"], row["loss"]] for row in trainer.state.log_history if "loss" in row]}
    assert math.isfinite(loss_after), "training diverged"
    atomic_write_json(tmp / CHECKPOINT_META, meta)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return meta

"""Configs of the tiny student and of fine-tuning (pure pydantic: importing them does not import torch)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from daggerlm.config.base import Section


class TinyModelConfig(BaseModel):
    """Shape of the locally built student (Llama architecture: `AutoTokenizer` then loads the trained
    tokenizer as saved; for qwen2 it rebuilds its own pre-tokenizer)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    vocab_size: int = Field(2048, ge=300)
    """BPE vocabulary size, special tokens included."""
    hidden_size: int = Field(256, ge=16)
    intermediate_size: int = Field(768, ge=16)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    max_position_embeddings: int = Field(4096, ge=128)
    corpus_instances: int = Field(200, ge=1)
    """Synthetic train instances whose text trains the tokenizer."""
    corpus_episodes: int = Field(4, ge=0)
    """Oracle episodes whose messages (commands, pytest output) join the tokenizer (and pretraining) corpus."""
    pretrain_steps: int = Field(0, ge=0)
    """Steps of language-model pretraining on the corpus (repositories, issues, patches, episodes of
    instances outside both splits); 0: fine-tuning starts from random weights."""
    pretrain_batch_size: int = Field(16, ge=1)
    pretrain_seq_len: int = Field(256, ge=16)
    """Window of pretraining. After 256-token windows the token loss on clean episodes grows with
    position (0.16 at 0-512, 0.55 at 1536-2048; flat after 2048-token windows), yet 2048 x 2 windows
    at the same tokens per step gave a base whose fine-tuned students resolved 0 of 20 (256 x 16: 10-13 of 20)."""
    pretrain_learning_rate: float = Field(3e-3, gt=0)


SFT_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 12, "learning_rate": 2e-4, "per_device_train_batch_size": 8, "max_length": 2048,
    "lr_scheduler_type": "cosine", "warmup_steps": 0.05, "logging_steps": 10, "weight_decay": 0.0,
    "gradient_checkpointing": False}
LORA_DEFAULTS: dict[str, Any] = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}


class CurriculumConfig(Section):
    """The entropy-gated length curriculum (`daggerlm/dagger/curriculum.py`): the student's generation budget per
    turn in rollouts starts at `start_tokens` and grows by `growth` (up to student.sampling.max_new_tokens)
    each iteration whose acting student's mean token entropy on its eval actions is below `entropy_below`."""

    kind: Literal["none", "entropy"] = "none"
    start_tokens: int = Field(64, ge=1)
    growth: float = Field(2.0, gt=1.0)
    entropy_below: float = Field(1.0, gt=0.0)
    """Nats per token."""
    entropy_states: int = Field(64, ge=1)
    """Eval actions (the first ones) the entropy is averaged over."""


class ObjectiveConfig(Section):
    """What fine-tuning minimises at each labeled state (the default is plain SFT on the teacher's label).

    `prefix`: whose tokens are scored: the teacher's label, or the student's own action at that state
    (on-policy). `alpha` mixes the per-token divergences: alpha·KL(teacher‖student) +
    (1−alpha)·KL(student‖teacher). `targets`: `hard` (the tokens only; reverse KL then needs the
    teacher's log-prob of each), `top_k` (the teacher's k most likely tokens: vLLM's logprobs) or `full`
    (an in-process `hf` teacher's logits)."""

    prefix: Literal["teacher", "student"] = "teacher"
    alpha: float = Field(1.0, ge=0.0, le=1.0)
    """1: forward KL (SFT with hard targets); 0: reverse KL."""
    targets: Literal["hard", "top_k", "full"] = "hard"
    k: int = Field(20, ge=1)
    """Teacher log-probs per token with `top_k` targets (vLLM serves at most its `--max-logprobs`, 20
    by default)."""
    temperature: float = Field(1.0, gt=0)
    """Divides the student's logits and the teacher's (an in-process teacher's logits, or a served
    teacher's top-k log-probs, renormalised over the k ids) before the divergence."""
    gamma: float = Field(0.0, ge=0.0, lt=1.0)
    """DistIL: discount of the future teacher-student disagreement each student token is also trained
    against (0: none). Needs `prefix: student`: the future is that of sequences the student sampled."""
    curriculum: CurriculumConfig = CurriculumConfig()

    @property
    def is_sft(self) -> bool:
        return self.prefix == "teacher" and self.alpha == 1.0 and self.targets == "hard" and self.gamma == 0.0

    @property
    def scored_k(self) -> int:
        """Top-k log-probs per token a served teacher is asked for: k with top-k targets, none (the
        realized token's only) with hard ones."""
        return self.k if self.targets == "top_k" else 0

    def teacher_needs(self) -> str | None:
        """What the teacher must give beyond text, as a phrase for an error; None: text is enough."""
        if self.targets == "full":
            return "the teacher's full distribution (targets: full): an in-process `hf` teacher"
        if self.targets == "top_k":
            return ("the teacher's top-k log-probs (targets: top_k): an `hf` teacher, or a served one with "
                    "endpoint.logprobs")
        if self.alpha < 1:
            return ("the teacher's log-prob of each token (reverse KL, alpha < 1): an `hf` teacher, or a served one "
                    "with endpoint.logprobs")
        return None

    @model_validator(mode="after")
    def _coherent(self) -> "ObjectiveConfig":
        if self.prefix == "student" and self.targets == "hard" and self.alpha == 1.0:
            raise ValueError("prefix: student with hard forward targets trains the student on its own tokens; "
                             "use targets top_k/full or alpha < 1")
        if self.gamma > 0 and (self.prefix != "student" or self.targets == "hard"):
            raise ValueError("gamma > 0 (DistIL) needs prefix: student (the future of sequences the student "
                             "sampled) and targets top_k or full (the disagreement is a forward KL)")
        return self


class TrainConfig(Section):
    mode: Literal["full", "lora"] = "full"
    """Full fine-tuning, or a LoRA adapter (PEFT) on the base model."""
    init_from: Literal["base", "previous"] = "previous"
    """Start each iteration from the initial student, or from the previous iteration's checkpoint."""
    sft: dict[str, Any] = Field(default_factory=lambda: dict(SFT_DEFAULTS))
    """Passed through to trl.SFTConfig (output, saving and reporting are set by daggerlm); keys given
    here override daggerlm's defaults one by one (the others keep them, not TRL's)."""
    lora: dict[str, Any] = Field(default_factory=lambda: dict(LORA_DEFAULTS))
    """Passed through to peft.LoraConfig when mode is lora; merged over daggerlm's defaults like `sft`."""
    objective: ObjectiveConfig = ObjectiveConfig()
    launch: str | None = None
    """An accelerate config file: the train stage runs under `accelerate launch --config_file` with it
    (several GPUs with DDP or FSDP, or CPU processes: `infra/accelerate/`); None: one process. The
    checkpoint is the same either way."""

    @field_validator("sft", "lora", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        """A partial `sft: {learning_rate: ...}` keeps the other defaults: dropping them silently
        would train with TRL's (e.g. learning rate 2e-5 instead of 2e-3)."""
        defaults = SFT_DEFAULTS if info.field_name == "sft" else LORA_DEFAULTS
        return {**defaults, **value} if isinstance(value, dict) else value

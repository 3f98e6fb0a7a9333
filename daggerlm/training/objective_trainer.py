"""TRL's SFTTrainer with the distillation objectives of `train.objective` as its loss.

The default objective (teacher prefix, hard targets, forward) is SFT and goes through SFTTrainer's
own loss untouched (its fused LM head never materialises the full logits). Any other objective takes
the logits and the teacher's side (`divergence.Targets`) at the completion's tokens: from an
in-process teacher run on the same token ids (its full logits, or their top-k), or from a served
teacher's scores the label stage stored with each state (`dagger.teacher_scores`), found by the
example's token ids. GKD's trainer is
not the base: it trains the last assistant turn only and mixes directions as a JSD, not
α·FKL + (1−α)·RKL.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from trl import SFTTrainer

from daggerlm.config.training import ObjectiveConfig
from daggerlm.errors import InputError
from daggerlm.training.divergence import Targets, objective_loss


def check_same_tokenizer(student_tokenizer, teacher_tokenizer, teacher: str) -> None:
    """Distributions are compared token id by token id: the two vocabularies must be the same."""
    if student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise InputError(f"teacher.model {teacher}: its tokenizer differs from the student's; soft targets and "
                         f"reverse KL compare the two distributions token by token and need one vocabulary")


def teacher_targets(teacher, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor,
                    objective: ObjectiveConfig) -> Targets:
    """The teacher's side of the shifted sequence (`labels`: its next tokens, no -100), from an
    in-process teacher run on the same ids."""
    with torch.no_grad():
        logits = teacher(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    if objective.targets == "full":
        return Targets("full", labels, full_logits=logits)
    logp = F.log_softmax(logits / objective.temperature, dim=-1)
    token_logp = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if objective.targets == "top_k":
        top_logp, top_ids = logp.topk(min(objective.k, logp.shape[-1]), dim=-1)
        return Targets("top_k", labels, token_logp=token_logp, top_ids=top_ids, top_logp=top_logp)
    return Targets("hard", labels, token_logp=token_logp)


Scores = dict[tuple[int, ...], tuple]
"""An example's token ids -> (teacher_token_logp, teacher_top_ids, teacher_top_logp) at its completion
(`dagger.teacher_scores.stored_scores`)."""


def check_scores_cover(scores: Scores, encoded_ids: list[list[int]], source: str) -> None:
    """Every example must find its stored scores by its token ids (else it was scored under another
    tokenizer, window or prefix than training renders it with)."""
    if missing := sum(tuple(ids) not in scores for ids in encoded_ids):
        raise InputError(f"{source}: {missing} of {len(encoded_ids)} examples have no teacher scores for their token "
                         f"ids (scored under another tokenizer, window or prefix): run the label stage again")


def stored_targets(scores: Scores, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor,
                   mask: torch.Tensor, objective: ObjectiveConfig) -> Targets:
    """`Targets` at the completion's positions (`mask`) from stored scores; top-k log-probs at the
    objective's temperature (renormalised over the k ids by the loss)."""
    k = objective.scored_k
    token_logp = torch.zeros(labels.shape, device=labels.device)
    top_ids = torch.zeros((*labels.shape, k), dtype=torch.long, device=labels.device)
    top_logp = torch.zeros((*labels.shape, k), device=labels.device)
    for b in range(labels.shape[0]):
        ids = input_ids[b] if attention_mask is None else input_ids[b][attention_mask[b].bool()]
        token, ids_k, logp_k = scores[tuple(ids.tolist())]
        where = mask[b].nonzero().squeeze(-1)
        token_logp[b, where] = torch.tensor(np.asarray(token), dtype=torch.float32, device=labels.device)
        if k:
            top_ids[b, where] = torch.tensor(np.stack(ids_k), device=labels.device)
            top_logp[b, where] = torch.tensor(np.stack(logp_k), dtype=torch.float32,
                                              device=labels.device) / objective.temperature
    if k:
        return Targets("top_k", labels, token_logp=token_logp, top_ids=top_ids, top_logp=top_logp)
    return Targets("hard", labels, token_logp=token_logp)


def behaviour_at(behaviour: dict[tuple[int, ...], list[float]], input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) the student's behaviour log-prob of each completion token (`training.behaviour`), NaN
    where unknown."""
    out = torch.full(mask.shape, float("nan"), device=mask.device)
    for b in range(mask.shape[0]):
        ids = input_ids[b] if attention_mask is None else input_ids[b][attention_mask[b].bool()]
        if (logp := behaviour.get(tuple(ids.tolist()))) is not None:
            out[b, mask[b].nonzero().squeeze(-1)] = torch.tensor(logp, dtype=torch.float32, device=mask.device)
    return out


class ObjectiveTrainer(SFTTrainer):
    """SFTTrainer whose loss is `objective` (α-mixed forward/reverse KL, DistIL's future term, clipped
    against the student's `behaviour` log-probs where the rollout recorded them)."""

    def __init__(self, *args, objective: ObjectiveConfig = ObjectiveConfig(), teacher=None,
                 scores: Scores | None = None, behaviour: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.behaviour = behaviour or {}
        self.teacher = teacher.eval() if teacher is not None else None
        self.scores = scores
        self.totals: dict[str, list[float]] = {}
        if objective.teacher_needs() and teacher is None and scores is None:
            raise InputError(f"train.objective needs {objective.teacher_needs()}; no teacher model or stored "
                             f"scores were given")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.objective.is_sft:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = self.objective_loss(model, inputs, num_items_in_batch)
        if (self.args.average_tokens_across_devices and (self.model_accepts_loss_kwargs or self.compute_loss_func)
                and num_items_in_batch is not None):
            # as Trainer.compute_loss: the token count is summed over processes and DDP averages the
            # gradients over them, so each process's loss is scaled by their number
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, outputs) if return_outputs else loss

    def objective_loss(self, model, inputs, num_items_in_batch=None):
        """(loss, model outputs) under `objective`, its divergences and entropy logged."""
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), use_cache=False)
        labels = inputs["labels"][:, 1:]
        mask, tokens = labels != -100, labels.clamp_min(0)
        if self.teacher is not None:
            targets = teacher_targets(self.teacher, inputs["input_ids"], inputs.get("attention_mask"), tokens,
                                      self.objective)
        elif self.scores is not None:
            targets = stored_targets(self.scores, inputs["input_ids"], inputs.get("attention_mask"), tokens, mask,
                                     self.objective)
        else:
            targets = Targets("hard", tokens)
        behaviour = (behaviour_at(self.behaviour, inputs["input_ids"], inputs.get("attention_mask"), mask)
                     if self.objective.gamma > 0 else None)
        loss, stats = objective_loss(outputs.logits[:, :-1], mask, targets, alpha=self.objective.alpha,
                                     temperature=self.objective.temperature, gamma=self.objective.gamma,
                                     behaviour_logp=behaviour, num_items_in_batch=num_items_in_batch)
        mode = "train" if model.training else "eval"
        for name, value in stats.items():
            self._metrics[mode][name].append(value)
            if model.training:
                self.totals.setdefault(name, []).append(value)
        return loss, outputs

    def means(self) -> dict[str, float]:
        """Each logged statistic (forward_kl, reverse_kl, entropy) averaged over every training step."""
        return {name: sum(values) / len(values) for name, values in self.totals.items()}

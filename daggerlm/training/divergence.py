"""Token-level distillation losses: forward and reverse KL, their α-mix, and DistIL's future term.

Every function takes the student's logits already shifted (position t predicts token t+1) and a
mask of the completion's tokens; nothing outside the mask gets a gradient. The teacher's side comes
in one of three forms (`Targets`):

- `hard`: only the tokens of the sequence (`labels`) and, for reverse KL, the teacher's log-prob of
  each (`token_logp`). Forward KL is then cross-entropy (SFT). Reverse KL is estimated from the
  sampled tokens in its policy-gradient form: the surrogate `(log p_s(y) - log p_t(y)).detach() *
  log p_s(y)` has the reverse-KL gradient in expectation over y ~ p_s, where the "k3" estimator used
  as a loss would give the *forward* KL's gradient.
- `top_k`: the teacher's k most likely ids and their log-probs (what vLLM returns); both sides are
  renormalised over those ids, so k = vocabulary size is the full distribution.
- `full`: the teacher's logits over the whole vocabulary (a teacher in the same process); the
  temperature divides both sides' logits, as in TRL's GKD.

The loss per token is α·FKL + (1−α)·RKL (α = 1: forward, α = 0: reverse), summed and divided by the
number of completion tokens in the batch (or `num_items_in_batch`, as TRL passes it under gradient
accumulation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Targets:
    """The teacher's side at each position of the shifted sequence (see the module docstring)."""

    kind: str  # hard | top_k | full
    labels: torch.Tensor  # (B, T) the sequence's next tokens
    token_logp: torch.Tensor | None = None  # (B, T) teacher log p(label): hard reverse KL
    top_ids: torch.Tensor | None = None  # (B, T, k)
    top_logp: torch.Tensor | None = None  # (B, T, k)
    full_logits: torch.Tensor | None = None  # (B, T, V) teacher logits (or log-probs), before temperature


@dataclass
class TokenTerms:
    """Per completion token (flattened over the mask): the values to log and the surrogate to minimise."""

    forward: torch.Tensor
    reverse: torch.Tensor
    entropy: torch.Tensor
    student_logp: torch.Tensor  # log p_s of the sequence's own tokens
    surrogate: torch.Tensor


def _kl_pair(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL(t‖s), KL(s‖t)) over the last dimension, exact."""
    forward = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    reverse = (student_logp.exp() * (student_logp - teacher_logp)).sum(-1)
    return forward, reverse


def token_terms(student_logits: torch.Tensor, mask: torch.Tensor, targets: Targets, alpha: float,
                temperature: float = 1.0) -> TokenTerms:
    """Forward KL, reverse KL and the α-mixed surrogate at every masked position."""
    mask = mask.bool()
    logits = student_logits[mask] / temperature  # (N, V)
    logp = F.log_softmax(logits, dim=-1)
    labels = targets.labels[mask]
    own = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1).detach()
    if targets.kind == "full":
        teacher = F.log_softmax(targets.full_logits[mask].float() / temperature, dim=-1)
        forward, reverse = _kl_pair(logp, teacher)
        surrogate = alpha * forward + (1 - alpha) * reverse
    elif targets.kind == "top_k":
        ids = targets.top_ids[mask]
        student_k = F.log_softmax(logits.gather(-1, ids), dim=-1)
        teacher_k = F.log_softmax(targets.top_logp[mask].float(), dim=-1)
        forward, reverse = _kl_pair(student_k, teacher_k)
        surrogate = alpha * forward + (1 - alpha) * reverse
    elif targets.kind == "hard":
        forward = -own
        if alpha < 1:
            if targets.token_logp is None:
                raise ValueError("reverse KL from hard targets needs the teacher's log-prob of each token")
            advantage = (own - targets.token_logp[mask].float()).detach()
            reverse = advantage.clone()  # a one-sample estimate of KL(s‖t) at this state
            surrogate = alpha * forward + (1 - alpha) * advantage * own
        else:
            reverse = torch.full_like(forward, float("nan"))
            surrogate = forward
    else:
        raise ValueError(f"targets.kind: expected hard, top_k or full, got {targets.kind!r}")
    return TokenTerms(forward, reverse, entropy, own, surrogate)


def future_returns(per_token: torch.Tensor, mask: torch.Tensor, gamma: float,
                   carry: torch.Tensor | None = None) -> torch.Tensor:
    """G_t = Σ_{t' > t} γ^(t'−t) D_{t'} over each row's masked positions, plus γ^(distance to the
    row's end) · carry (the disagreement of the episode's later turns); (B, T), zero off the mask."""
    per_token = per_token * mask
    out = torch.zeros_like(per_token)
    running = carry.to(per_token) if carry is not None else torch.zeros(per_token.shape[0], dtype=per_token.dtype,
                                                                         device=per_token.device)
    for t in range(per_token.shape[1] - 1, -1, -1):
        on = mask[:, t].bool()
        out[:, t] = torch.where(on, gamma * running, 0.0)
        running = torch.where(on, gamma * running + per_token[:, t], running)
    return out


def clipped_score(logp: torch.Tensor, behaviour_logp: torch.Tensor | None, advantage: torch.Tensor,
                  clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate for a cost: max(r·A, clip(r, 1−ε, 1+ε)·A), r = p_now(y) / p_behaviour(y).

    Its gradient at r = 1 is A·∇log p, the score-function term; once an update has moved a token's
    probability ε away from the model that sampled it, in the direction A asks, the token's gradient
    stops. Without the clip, a dataset reused for several epochs pushes every above-average token down
    without bound. Where the behaviour log-prob is unknown (NaN, or no tensor) r is 1 with the gradient
    of log p: the plain score-function term, unclipped."""
    old = logp.detach() if behaviour_logp is None else torch.where(behaviour_logp.isnan(), logp.detach(),
                                                                   behaviour_logp.to(logp))
    ratio = (logp - old).exp()
    return torch.maximum(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)


def objective_loss(student_logits: torch.Tensor, mask: torch.Tensor, targets: Targets, *, alpha: float = 1.0,
                   temperature: float = 1.0, gamma: float = 0.0, carry: torch.Tensor | None = None,
                   behaviour_logp: torch.Tensor | None = None,
                   num_items_in_batch: int | torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The batch loss and its statistics (mean forward KL, reverse KL, student entropy per token).

    With `gamma` > 0 (DistIL), each token's log-prob is also pushed by the discounted disagreement
    that follows it (`future_returns` of the per-token forward KL, detached): the score-function part
    of the gradient of the sequence's total disagreement, for sequences the student sampled. The
    returns are centred on the batch's mean (a baseline: lower variance, at a bias of the order of one
    over the batch's tokens, since each token is in its own mean) and the term is clipped against the student's behaviour log-prob of each token
    (`behaviour_logp`, (B, T), NaN where unknown; `clipped_score`), both at temperature 1."""
    mask = mask.bool()
    terms = token_terms(student_logits, mask, targets, alpha, temperature)
    surrogate = terms.surrogate
    if gamma > 0:
        dense = torch.zeros(mask.shape, dtype=terms.forward.dtype, device=mask.device)
        dense[mask] = terms.forward.detach()
        returns = future_returns(dense, mask, gamma, carry)[mask]
        own = terms.student_logp if temperature == 1 else (
            F.log_softmax(student_logits[mask].float(), dim=-1).gather(-1, targets.labels[mask].unsqueeze(-1))
            .squeeze(-1))
        behaviour = behaviour_logp[mask] if behaviour_logp is not None else None
        surrogate = surrogate + clipped_score(own, behaviour, returns - returns.mean())
    denom = num_items_in_batch if num_items_in_batch is not None else mask.sum().clamp_min(1)
    if isinstance(denom, torch.Tensor):
        denom = denom.to(surrogate.device)
    loss = surrogate.sum() / denom
    n = max(int(mask.sum()), 1)
    stats = {"forward_kl": float(terms.forward.detach().sum()) / n,
             "reverse_kl": float(terms.reverse.detach().sum()) / n,
             "entropy": float(terms.entropy.sum()) / n}
    return loss, stats

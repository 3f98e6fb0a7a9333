"""The distillation losses against TRL's GKD loss, analytic gradients and exact enumeration."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from daggerlm.training.divergence import Targets, clipped_score, future_returns, objective_loss, token_terms

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

B, T, V = 3, 7, 11


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, T, V, generator=g) * 2
    teacher = torch.randn(B, T, V, generator=g) * 2
    labels = torch.randint(0, V, (B, T), generator=g)
    mask = torch.rand(B, T, generator=g) > 0.4
    mask[0, :] = False  # a row with nothing to train
    return student, teacher, labels, mask


@pytest.mark.parametrize("alpha,beta", [(1.0, 0), (0.0, 1)])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("num_items", [None, 13])
def test_pure_directions_equal_trl_generalized_jsd(alpha, beta, temperature, num_items):
    student, teacher, labels, mask = _batch()
    ours, _ = objective_loss(student, mask, Targets("full", labels, full_logits=teacher), alpha=alpha,
                             temperature=temperature, num_items_in_batch=num_items)
    trl = GKDTrainer.generalized_jsd_loss(student, teacher, labels.masked_fill(~mask, -100), beta=beta,
                                          temperature=temperature, num_items_in_batch=num_items)
    torch.testing.assert_close(ours, trl)


def test_mixing_is_the_weighted_sum_of_the_directions_not_a_jsd():
    student, teacher, labels, mask = _batch(1)
    targets = Targets("full", labels, full_logits=teacher)
    fkl = objective_loss(student, mask, targets, alpha=1.0)[0]
    rkl = objective_loss(student, mask, targets, alpha=0.0)[0]
    mixed = objective_loss(student, mask, targets, alpha=0.75)[0]
    torch.testing.assert_close(mixed, 0.75 * fkl + 0.25 * rkl)
    jsd = GKDTrainer.generalized_jsd_loss(student, teacher, labels.masked_fill(~mask, -100), beta=0.25)
    assert not torch.isclose(mixed, jsd)


def test_forward_kl_gradient_is_student_minus_teacher_probabilities():
    student, teacher, labels, mask = _batch(2)
    student.requires_grad_(True)
    loss, _ = objective_loss(student, mask, Targets("full", labels, full_logits=teacher), alpha=1.0,
                             num_items_in_batch=1)
    loss.backward()
    expected = (F.softmax(student.detach(), -1) - F.softmax(teacher, -1)) * mask.unsqueeze(-1)
    torch.testing.assert_close(student.grad, expected)


@pytest.mark.parametrize("kind", ["full", "top_k", "hard"])
def test_tokens_outside_the_completion_get_no_gradient(kind):
    student, teacher, labels, mask = _batch(3)
    student.requires_grad_(True)
    top_logp, top_ids = F.log_softmax(teacher, -1).topk(4, dim=-1)
    targets = Targets(kind, labels, token_logp=F.log_softmax(teacher, -1).gather(-1, labels[..., None])[..., 0],
                      top_ids=top_ids, top_logp=top_logp, full_logits=teacher)
    objective_loss(student, mask, targets, alpha=0.5, gamma=0.9)[0].backward()
    assert student.grad[~mask].abs().max() == 0
    assert student.grad[mask].abs().sum(-1).min() > 0


@pytest.mark.parametrize("alpha", [1.0, 0.3, 0.0])
def test_top_k_with_the_whole_vocabulary_is_the_full_distribution(alpha):
    student, teacher, labels, mask = _batch(4)
    full = objective_loss(student, mask, Targets("full", labels, full_logits=teacher), alpha=alpha)
    top_logp, top_ids = F.log_softmax(teacher, -1).topk(V, dim=-1)
    top = objective_loss(student, mask, Targets("top_k", labels, top_ids=top_ids, top_logp=top_logp), alpha=alpha)
    torch.testing.assert_close(full[0], top[0])
    assert full[1] == pytest.approx(top[1])


def _expected_gradient(z: torch.Tensor, per_sample_loss) -> torch.Tensor:
    """Σ_y p_s(y) ∇_z loss(y): the gradient of a sampled loss in expectation, by enumeration."""
    total = torch.zeros_like(z)
    for y in range(z.shape[-1]):
        zz = z.clone().requires_grad_(True)
        per_sample_loss(zz, y).backward()
        total += F.softmax(z, -1)[y].item() * zz.grad
    return total


def test_sampled_reverse_kl_surrogate_has_the_reverse_kl_gradient_in_expectation():
    g = torch.Generator().manual_seed(5)
    z, teacher_logp = torch.randn(V, generator=g), F.log_softmax(torch.randn(V, generator=g) * 2, -1)
    mask = torch.ones(1, 1, dtype=torch.bool)

    def surrogate(zz, y):
        labels = torch.tensor([[y]])
        targets = Targets("hard", labels, token_logp=teacher_logp[labels])
        return token_terms(zz.view(1, 1, V), mask, targets, alpha=0.0).surrogate.sum()

    zz = z.clone().requires_grad_(True)
    logp = F.log_softmax(zz, -1)
    (logp.exp() * (logp - teacher_logp)).sum().backward()  # exact KL(s‖t)
    torch.testing.assert_close(_expected_gradient(z, surrogate), zz.grad)

    def k3(zz, y):  # (r − 1) − log r with r = p_t/p_s, used directly as a loss
        log_r = teacher_logp[y] - F.log_softmax(zz, -1)[y]
        return log_r.exp() - 1 - log_r

    zz = z.clone().requires_grad_(True)
    logp = F.log_softmax(zz, -1)
    (teacher_logp.exp() * (teacher_logp - logp)).sum().backward()  # exact KL(t‖s): what k3 really follows
    torch.testing.assert_close(_expected_gradient(z, k3), zz.grad)


def test_future_returns_discount_later_disagreement_within_the_completion_and_from_later_turns():
    d = torch.tensor([[0.0, 1.0, 2.0, 4.0, 8.0]])
    mask = torch.tensor([[False, True, True, False, True]])
    gamma, carry = 0.5, torch.tensor([16.0])
    got = future_returns(d, mask, gamma, carry)
    on = [1, 2, 4]
    for i, t in enumerate(on):
        later = on[i + 1:]
        want = sum(gamma ** (j + 1) * d[0, u].item() for j, u in enumerate(later)) + gamma ** (len(later) + 1) * 16
        assert got[0, t].item() == pytest.approx(want)
    assert got[0, 0] == 0 and got[0, 3] == 0


def test_hard_forward_targets_are_cross_entropy_over_the_completion():
    student, _, labels, mask = _batch(6)
    loss, stats = objective_loss(student, mask, Targets("hard", labels))
    torch.testing.assert_close(loss, F.cross_entropy(student[mask], labels[mask]))
    entropy = -(F.softmax(student[mask], -1) * F.log_softmax(student[mask], -1)).sum(-1).mean()
    assert stats["entropy"] == pytest.approx(entropy.item(), rel=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
def test_exact_divergences_are_nonnegative(alpha):
    student, teacher, labels, mask = _batch(7)
    loss, stats = objective_loss(student, mask, Targets("full", labels, full_logits=teacher), alpha=alpha)
    assert loss >= 0 and stats["forward_kl"] >= 0 and stats["reverse_kl"] >= 0


def _optimise_one_token(advantage: float, behaviour: torch.Tensor | None, steps: int = 300) -> tuple[float, float]:
    """(log p(y) before, after) `steps` of SGD on the clipped score term alone, on one fixed sample."""
    z = torch.randn(V, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    start = F.log_softmax(z, -1)[2].item()
    optimiser = torch.optim.SGD([z], lr=0.05)
    for _ in range(steps):
        optimiser.zero_grad()
        clipped_score(F.log_softmax(z, -1)[2:3], behaviour, torch.tensor([advantage])).sum().backward()
        optimiser.step()
    return start, F.log_softmax(z, -1)[2].item()


@pytest.mark.parametrize("advantage, bound", [(1.0, 0.8), (-1.0, 1.2)])
def test_the_clip_stops_a_reused_sample_epsilon_from_the_model_that_sampled_it(advantage, bound):
    """DistIL's score term on a dataset reused for epochs: clipped, a token's probability moves to
    (1 ± ε) of its behaviour probability and stops; unclipped (behaviour unknown) it is pushed on."""
    start, _ = _optimise_one_token(advantage, None, steps=0)
    _, clipped = _optimise_one_token(advantage, torch.tensor([start]))
    ratio = torch.tensor(clipped - start).exp().item()
    assert 0 <= (bound - ratio) * advantage < 0.05  # at the bound, past it by at most the last step
    _, unclipped = _optimise_one_token(advantage, None)
    assert (clipped - unclipped) * advantage > 0.5  # the unclipped term went much further
    if advantage > 0:
        assert unclipped < start - 3


def test_on_policy_the_clipped_distil_term_is_the_plain_score_function():
    """With the behaviour log-probs equal to the current ones (the first step on fresh data) the clip
    changes no gradient: the term is the unclipped one, known or unknown behaviour alike."""
    student, teacher, labels, mask = _batch(6)
    targets = Targets("full", labels, full_logits=teacher)
    current = F.log_softmax(student, -1).gather(-1, labels[..., None])[..., 0]
    grads = []
    for behaviour in (None, current, torch.where(mask, current, float("nan"))):
        z = student.clone().requires_grad_(True)
        objective_loss(z, mask, targets, gamma=0.5, behaviour_logp=behaviour)[0].backward()
        grads.append(z.grad)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], grads[2])

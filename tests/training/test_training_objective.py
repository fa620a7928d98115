"""The MDLM objective on hand-sized tensors (docs/reference-behaviour.md, section 4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from diffutron.errors import DiffutronError
from diffutron.model.tokens import IGNORE_INDEX
from diffutron.training.objective import MDLMObjective, noise_generator


def test_linear_schedule_weight_is_one_over_t():
    objective = MDLMObjective(schedule="linear")
    t = torch.tensor([0.001, 0.25, 0.5, 0.999])
    assert torch.allclose(objective.alpha(t), 1 - t)
    assert torch.allclose(objective.weight(t), 1 / (t + 1e-6))


def test_cosine_schedule_matches_its_formula():
    objective = MDLMObjective(schedule="cosine")
    t = torch.tensor([0.001, 0.3, 0.7, 0.999], dtype=torch.float64)
    alpha = 1 - torch.cos(math.pi / 2 * (1 - t))
    assert torch.allclose(objective.alpha(t), alpha)
    # w(t) = -alpha'(t) / (1 - alpha(t) + 1e-6), alpha' by central differences
    h = 1e-6
    derivative = (objective.alpha(t + h) - objective.alpha(t - h)) / (2 * h)
    assert torch.allclose(objective.weight(t), -derivative / (1 - alpha + 1e-6), rtol=1e-5)
    assert torch.equal(MDLMObjective(schedule="cosine", weighting="ones").weight(t), torch.ones_like(t))


def test_times_lie_in_eps_to_one():
    objective = MDLMObjective(eps=0.2)
    t = objective.sample_times(20000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert t.min() >= 0.2 and t.max() < 1.0
    assert abs(t.mean().item() - 0.6) < 0.01


def masks_drawn(seed: int, rank: int, batches: int = 3) -> list[torch.Tensor]:
    """The mask patterns a process draws for a few (8 x 32) batches, as the trainer draws them."""
    objective, generator = MDLMObjective(), noise_generator(seed, rank)
    ids = torch.arange(8 * 32).reshape(8, 32)
    masks = []
    for _ in range(batches):
        t = objective.sample_times(8, ids.device, generator)
        masks.append(objective.corrupt(ids, ids, t, mask_token_id=-1, generator=generator)[1])
    return masks


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_each_process_draws_its_own_reproducible_noise():
    rank0, rank1 = masks_drawn(seed=7, rank=0), masks_drawn(seed=7, rank=1)
    assert same(rank0, masks_drawn(seed=7, rank=0)) and same(rank1, masks_drawn(seed=7, rank=1))
    assert not any(torch.equal(x, y) for x, y in zip(rank0, rank1))  # DDP ranks: different noise
    # seed and rank are not simply added: (8, 0) is unrelated to (7, 1), and the seed matters
    assert not same(masks_drawn(seed=8, rank=0), rank1) and not same(masks_drawn(seed=8, rank=0), rank0)
    assert all(0 < mask.float().mean() < 1 for mask in rank0 + rank1)  # real draws, not all or nothing


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_mask_rate_matches_one_minus_alpha(schedule):
    objective = MDLMObjective(schedule=schedule)
    t = torch.tensor([0.1, 0.5, 0.9])
    ids = torch.full((3, 40000), 7)
    labels = ids.clone()
    noisy, masked = objective.corrupt(ids, labels, t, mask_token_id=3, generator=torch.Generator().manual_seed(1))
    rates = masked.float().mean(dim=1)
    expected = 1 - objective.alpha(t)
    # binomial standard deviation at n = 40000 is at most 0.0025: 4 sigma
    assert torch.allclose(rates, expected, atol=0.01)
    assert torch.equal(noisy == 3, masked)
    assert torch.equal(noisy[~masked], ids[~masked])


def test_unlabelled_positions_are_never_masked():
    objective = MDLMObjective()
    ids = torch.arange(12).reshape(2, 6) + 10
    labels = ids.clone()
    labels[0, :4] = IGNORE_INDEX
    labels[1, 5] = IGNORE_INDEX
    t = torch.full((2,), 1.0)  # alpha = 0: every labelled position is masked
    noisy, masked = objective.corrupt(ids, labels, t, mask_token_id=0)
    assert torch.equal(masked, labels != IGNORE_INDEX)
    assert torch.equal(noisy[labels == IGNORE_INDEX], ids[labels == IGNORE_INDEX])


def _example():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.tensor([[1, 2, 3, IGNORE_INDEX], [4, 0, 1, 2]])
    masked = torch.tensor([[True, False, True, False], [False, False, False, True]])
    t = torch.tensor([0.5, 0.25])
    return logits, labels, masked, t


def test_sequence_normalization_by_hand():
    logits, labels, masked, t = _example()
    ce = lambda row, col: F.cross_entropy(logits[row, col][None], labels[row, col][None]).item()  # noqa: E731
    w = (1 / (t + 1e-6)).tolist()
    row0 = (ce(0, 0) + ce(0, 2)) * w[0] / 3  # 3 labelled positions
    row1 = ce(1, 3) * w[1] / 4  # 4 labelled positions
    loss = MDLMObjective(normalization="sequence").loss(logits, labels, masked, t)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_token_normalization_by_hand():
    logits, labels, masked, t = _example()
    ce = lambda row, col: F.cross_entropy(logits[row, col][None], labels[row, col][None]).item()  # noqa: E731
    total = ce(0, 0) + ce(0, 2) + ce(1, 3)  # weighting "ones"
    loss = MDLMObjective(normalization="token", weighting="ones").loss(logits, labels, masked, t)
    assert loss.item() == pytest.approx(total / 7, rel=1e-6)


def test_nothing_masked_gives_zero_with_a_graph():
    logits, labels, _, t = _example()
    loss = MDLMObjective().loss(logits, labels, torch.zeros_like(labels, dtype=torch.bool), t)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_gradient_reaches_only_masked_positions():
    logits, labels, masked, t = _example()
    MDLMObjective().loss(logits, labels, masked, t).backward()
    touched = logits.grad.abs().sum(dim=-1) > 0
    assert torch.equal(touched, masked)


def test_bad_settings_are_rejected():
    with pytest.raises(DiffutronError, match="schedule"):
        MDLMObjective(schedule="quadratic")
    with pytest.raises(DiffutronError, match="normalization"):
        MDLMObjective(normalization="batch")

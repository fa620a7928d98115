"""How many masked tokens to reveal at each step of a block (SPEC section 3, step 3)."""

from __future__ import annotations

import numpy as np
import torch


def reveal_fraction(step: int, steps: int) -> float:
    """Fraction of the still-masked tokens revealed at `step` of `steps`, linear schedule.

    Mirrors the reference arithmetic: s and t are float32, alpha(t) = 1 - t, and the ratio
    (1 - alpha(s)) / (1 - alpha(t)) is a float32 value; the rounding at .5 boundaries
    of the caller depends on these exact bits.
    """
    one = np.float32(1.0)
    t = np.float32((steps - step) / steps)
    s = np.float32((steps - step - 1) / steps)
    ratio = (one - (one - s)) / (one - (one - t))
    return float(one - np.float32(ratio))


def transfer_counts(masked: int, steps: int) -> list[int]:
    """Deterministic reveal counts for a block with `masked` masks in `steps` steps.

    Zero counts are dropped (they would cost a model call and change nothing), so the
    result has at most `masked` entries and sums to `masked`.
    """
    counts: list[int] = []
    left = masked
    for step in range(steps):
        if left == 0:
            break
        count = min(left, int(np.round(np.float64(left) * np.float64(reveal_fraction(step, steps)))))
        if count > 0:
            counts.append(count)
        left -= count
    return counts


def stochastic_transfer_counts(
    masked: torch.Tensor, steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-row binomial reveal counts, shape (rows, kept steps); all-zero steps are dropped."""
    left = masked.to(torch.float64).clone()
    columns = []
    for step in range(steps):
        if not bool((left > 0).any()):
            break
        probability = torch.full_like(left, reveal_fraction(step, steps))
        count = torch.minimum(torch.binomial(left, probability, generator=generator), left)
        left -= count
        if bool((count > 0).any()):
            columns.append(count.to(torch.long))
    if not columns:
        return torch.zeros((masked.shape[0], 0), dtype=torch.long, device=masked.device)
    return torch.stack(columns, dim=1)

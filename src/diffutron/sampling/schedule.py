"""How many masked tokens to reveal at each step of a block (docs/reference-behaviour.md, section 3, step 3)."""

from __future__ import annotations

import numpy as np
import torch

from diffutron.sampling.interrupt import checkpoint


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
        checkpoint(step)  # a schedule of very many steps loops long before the first model call
        count = min(left, int(np.round(np.float64(left) * np.float64(reveal_fraction(step, steps)))))
        if count > 0:
            counts.append(count)
        left -= count
    return counts


def stochastic_draws(
    masked: int, steps: int, generator: torch.Generator | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """One row's binomial reveal counts (docs/reference-behaviour.md, section 3), zeros included, as a
    (steps,) float64 tensor on `device`: drawn without reading anything back to the host.

    Each row draws from its own generator (`sampling/streams.py`), so its schedule does not
    depend on the other rows of the batch. Once nothing is left, the draws are binomials of 0
    trials, which are 0 (and on the CPU consume no random numbers).
    """
    left = torch.full((1,), float(masked), dtype=torch.float64, device=device)
    draws = []
    for step in range(steps):
        checkpoint(step)
        probability = torch.full_like(left, reveal_fraction(step, steps))
        count = torch.minimum(torch.binomial(left, probability, generator=generator), left)
        left = left - count
        draws.append(count)
    return torch.cat(draws)


def nonzero_counts(draws: list[float]) -> list[int]:
    """The counts of a schedule without its zeros (they would cost a model call and change nothing)."""
    return [int(count) for count in draws if count > 0]


def stochastic_transfer_counts(
    masked: int, steps: int, generator: torch.Generator | None = None, device: torch.device | None = None
) -> list[int]:
    """One row's binomial reveal counts, zero counts dropped."""
    return nonzero_counts(stochastic_draws(masked, steps, generator, device).tolist())

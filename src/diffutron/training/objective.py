"""The masked diffusion (MDLM) training objective of docs/reference-behaviour.md, section 4, as pure tensor functions.

Per sequence a time t ~ U[eps, 1) is drawn; every labelled position is masked independently with
probability 1 - alpha(t); the loss is the weighted cross-entropy of the unshifted logits at the
masked positions. Kept free of any trainer so it can be tested on hand-sized tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from diffutron.errors import DiffutronError
from diffutron.model.tokens import IGNORE_INDEX

WEIGHT_EPSILON = 1e-6

Schedule = Literal["linear", "cosine"]
Weighting = Literal["scheduler", "ones"]
Normalization = Literal["sequence", "token"]


def noise_generator(
    seed: int, process_index: int, device: torch.device | str = "cpu", step: int | None = None
) -> torch.Generator:
    """The objective's own random stream (times t and mask patterns), one per process.

    The Trainer seeds torch's global RNG identically in every DDP process, so noise drawn from it
    would repeat the same t and mask pattern on every rank. Mixing the process index into the seed
    (numpy's SeedSequence, so nearby seeds and ranks give unrelated streams) makes the ranks'
    noise independent while a given (seed, rank) always draws the same noise. `step` starts a
    fresh stream for a resumed run whose saved state cannot be restored (another device type).
    """
    words = [seed, process_index] if step is None else [seed, process_index, step]
    entropy = np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(entropy))


@dataclass(frozen=True)
class MDLMObjective:
    """The objective's settings.

    schedule: alpha(t) = 1 - t (linear) or 1 - cos(pi/2 (1 - t)) (cosine).
    weighting: "scheduler" is w(t) = -alpha'(t) / (1 - alpha(t) + 1e-6); "ones" is w = 1.
    normalization: "sequence" (dllm) divides each row's sum by its labelled positions and averages
    the rows; "token" divides the batch sum by the batch's labelled positions.
    """

    schedule: Schedule = "linear"
    weighting: Weighting = "scheduler"
    normalization: Normalization = "sequence"
    eps: float = 1e-3

    def __post_init__(self) -> None:
        for name, allowed in (
            ("schedule", ("linear", "cosine")),
            ("weighting", ("scheduler", "ones")),
            ("normalization", ("sequence", "token")),
        ):
            if getattr(self, name) not in allowed:
                raise DiffutronError(
                    f"objective.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.eps < 1.0:
            raise DiffutronError(f"objective.eps must be in [0, 1), got {self.eps}")

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is still clean at time t."""
        if self.schedule == "linear":
            return 1.0 - t
        return 1.0 - torch.cos(math.pi / 2 * (1.0 - t))

    def mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        """1 - alpha(t), computed directly (1 - (1 - t) loses precision in float32)."""
        if self.schedule == "linear":
            return t
        return torch.cos(math.pi / 2 * (1.0 - t))

    def alpha_derivative(self, t: torch.Tensor) -> torch.Tensor:
        if self.schedule == "linear":
            return -torch.ones_like(t)
        return -(math.pi / 2) * torch.sin(math.pi / 2 * (1.0 - t))

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        if self.weighting == "ones":
            return torch.ones_like(t)
        return -self.alpha_derivative(t) / (self.mask_probability(t) + WEIGHT_EPSILON)

    def sample_times(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """t ~ U[eps, 1), one per sequence."""
        uniform = torch.rand(batch_size, device=device, generator=generator)
        return self.eps + (1.0 - self.eps) * uniform

    def corrupt(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        t: torch.Tensor,
        mask_token_id: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy ids and the boolean map of masked positions; label -100 is never masked."""
        draws = torch.rand(input_ids.shape, device=input_ids.device, generator=generator)
        masked = (draws < self.mask_probability(t)[:, None]) & (labels != IGNORE_INDEX)
        return torch.where(masked, torch.full_like(input_ids, mask_token_id), input_ids), masked

    def coefficients(self, labels: torch.Tensor, masked: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Each masked position's factor in the loss, in `masked.nonzero()` order (float32).

        The loss is sum(coefficient * cross-entropy): w(t) of the row, divided by the row's labelled
        positions and the row count ("sequence") or by the batch's labelled positions ("token").
        """
        rows = masked.nonzero(as_tuple=True)[0]
        weights = self.weight(t).to(torch.float32)[rows]
        labelled = (labels != IGNORE_INDEX).sum(dim=1).to(torch.float32)
        if self.normalization == "token":
            return weights / labelled.sum().clamp_min(1.0)
        return weights / (labelled.clamp_min(1.0)[rows] * labels.shape[0])

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, masked: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Weighted masked cross-entropy, normalized by labelled positions, from full logits.

        Only masked positions enter the cross-entropy. With nothing masked the result is an exact
        zero that is still connected to `logits` (through the empty selection), so backward works.
        Training computes the same quantity without full logits (`diffutron.training.output_loss`).
        """
        rows, columns = masked.nonzero(as_tuple=True)
        cross_entropy = F.cross_entropy(logits[rows, columns].float(), labels[rows, columns], reduction="none")
        return (cross_entropy * self.coefficients(labels, masked, t)).sum()

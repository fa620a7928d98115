"""Fast-dLLM's threshold rule."""

from __future__ import annotations

import torch

from diffutron.sampling.rules._parallel import ParallelRule


class Threshold(ParallelRule):
    """Every position whose candidate's probability is >= threshold (and at least the most probable one)."""

    name = "threshold"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def accepted(self, ordered: torch.Tensor) -> torch.Tensor:
        return ordered >= self.threshold

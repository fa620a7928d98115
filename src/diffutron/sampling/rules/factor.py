"""Fast-dLLM's factor rule."""

from __future__ import annotations

import torch

from diffutron.sampling.rules._parallel import ParallelRule


class Factor(ParallelRule):
    """The largest n with (i + 1) * (1 - c_i) < factor for all i <= n, c sorted in decreasing order."""

    name = "factor"

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def accepted(self, ordered: torch.Tensor) -> torch.Tensor:
        rank = torch.arange(1, ordered.shape[1] + 1, device=ordered.device)
        passes = (rank + 1) * (1 - ordered) < self.factor
        return passes.long().cumprod(dim=1).bool()

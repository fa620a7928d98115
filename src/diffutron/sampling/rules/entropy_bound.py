"""The entropy-bounded sampler (EB-sampler): as many tokens per call as a budget of uncertainty allows."""

from __future__ import annotations

import math

import torch

from diffutron.sampling.predictions import Predictions
from diffutron.sampling.rules._parallel import ParallelRule


class EntropyBound(ParallelRule):
    """The positions in order of increasing entropy, while the entropies taken sum to at most `entropy_bound`
    nats (and at least the least uncertain one): confident positions cost little of the budget."""

    name = "entropy_bound"

    def __init__(self, entropy_bound: float) -> None:
        self.entropy_bound = entropy_bound

    def ranking(self, predictions: Predictions) -> torch.Tensor:
        return torch.where(predictions.due, -predictions.entropy, -math.inf)

    def accepted(self, ordered: torch.Tensor) -> torch.Tensor:
        return (-ordered).cumsum(dim=1) <= self.entropy_bound

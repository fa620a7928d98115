"""The model card's count schedule (docs/reference-behaviour.md, section 3): a fixed number of calls per block."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.predictions import Predictions
from diffutron.sampling.rules import Budget, CommitRule, Plan
from diffutron.sampling.schedule import nonzero_counts, stochastic_draws, transfer_counts


class CountSchedule(CommitRule):
    """The `count` best-ranked positions per row (ties: topk order), the counts planned per block."""

    name = "count"
    until_filled = False
    planned = True

    def __init__(self, steps_per_block: int, stochastic: bool) -> None:
        self.steps_per_block = steps_per_block
        self.stochastic = stochastic

    @classmethod
    def from_config(cls, config: GenerationConfig, steps_per_block: int) -> CountSchedule:
        return CountSchedule(steps_per_block, config.stochastic_transfer)

    def plans(self, masked: int, generators: Sequence[torch.Generator | None], device: torch.device) -> list[Plan]:
        """Per-call counts (zeros dropped); with stochastic transfer each row's own draws, read
        back together: one read for all the rows that start a block at the same call.
        """
        if not self.stochastic:
            return [tuple(transfer_counts(masked, self.steps_per_block))] * len(generators)
        drawn = torch.stack(
            [stochastic_draws(masked, self.steps_per_block, generator, device) for generator in generators]
        )
        return [tuple(nonzero_counts(draws)) for draws in drawn.tolist()]

    def choose(self, predictions: Predictions, budget: Budget | None) -> torch.Tensor:
        """A row's `count` best positions by ranking score, or all of its due ones if it has fewer.

        One batched `topk` per distinct count (a single one without stochastic transfer) picks,
        row by row, what a per-row `topk(k=count)` picks, and costs no host sync.
        """
        assert budget is not None
        score = predictions.score
        committed = torch.zeros(score.shape, dtype=torch.bool, device=score.device)
        for count in sorted(set(budget.counts) - {0}):
            scores, chosen = score.topk(min(count, score.shape[1]), dim=1)
            taken = torch.isfinite(scores) & (budget.on_device == count)[:, None]
            committed |= torch.zeros_like(committed).scatter_(1, chosen, taken)
        return committed

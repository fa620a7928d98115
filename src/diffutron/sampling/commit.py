"""Which candidates a step commits: the model card's count schedule, or Fast-dLLM's parallel rules.

A rule plans each row's block when the row starts it, then, at every model call, sees a
(rows, width) confidence grid that is -inf wherever nothing may be committed (not a mask, after
the row's block, or a finished row) and returns a bool grid of the positions to fill. The count
schedule fixes the number of model calls per block; the parallel rules commit as many confident
tokens as they can and run until the block is full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.schedule import nonzero_counts, stochastic_draws, transfer_counts


@dataclass(frozen=True)
class Budget:
    """How many positions each row may commit at one call, on the host (free to read) and on the device."""

    counts: tuple[int, ...]
    on_device: torch.Tensor  # (rows,) long, the same counts


Plan = tuple[int, ...] | None  # a row's counts per call in its block; None: as many calls as it needs


class CommitRule(Protocol):
    until_filled: bool  # a row's block ends once no mask up to the block's end is left

    def plans(self, masked: int, generators: Sequence[torch.Generator | None], device: torch.device) -> list[Plan]:
        """The plans of rows starting a block of `masked` masks, drawn from their own generators."""

    def choose(self, confidence: torch.Tensor, budget: Budget | None) -> torch.Tensor:
        """(rows, width) bool: the positions to commit at this call."""


class CountSchedule:
    """docs/reference-behaviour.md, section 3: the `count` most confident positions per row (ties: topk order)."""

    until_filled = False

    def __init__(self, steps_per_block: int, stochastic: bool) -> None:
        self.steps_per_block = steps_per_block
        self.stochastic = stochastic

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

    def choose(self, confidence: torch.Tensor, budget: Budget | None) -> torch.Tensor:
        """A row's `count` best positions, or all of its eligible ones if it has fewer.

        One batched `topk` per distinct count (a single one without stochastic transfer) picks,
        row by row, what a per-row `topk(k=count)` picks, and costs no host sync.
        """
        assert budget is not None
        committed = torch.zeros(confidence.shape, dtype=torch.bool, device=confidence.device)
        for count in sorted(set(budget.counts) - {0}):
            scores, chosen = confidence.topk(min(count, confidence.shape[1]), dim=1)
            taken = torch.isfinite(scores) & (budget.on_device == count)[:, None]
            committed |= torch.zeros_like(committed).scatter_(1, chosen, taken)
        return committed


class _ParallelRule:
    """At least the most confident position per row, plus those the rule accepts."""

    until_filled = True

    def plans(self, masked: int, generators: Sequence[torch.Generator | None], device: torch.device) -> list[Plan]:
        return [None] * len(generators)  # a block takes at most `masked` calls: each commits a token per row

    def choose(self, confidence: torch.Tensor, budget: torch.Tensor | None) -> torch.Tensor:
        eligible = torch.isfinite(confidence)
        ordered, order = confidence.sort(dim=1, descending=True)
        taken = self.accepted(ordered) & torch.isfinite(ordered)
        taken[:, 0] |= eligible.any(dim=1)
        return torch.zeros_like(eligible).scatter_(1, order, taken)

    def accepted(self, ordered: torch.Tensor) -> torch.Tensor:
        """Which of the confidences, sorted in decreasing order per row, to commit."""
        raise NotImplementedError


class Threshold(_ParallelRule):
    """Fast-dLLM's threshold rule: every position with confidence >= threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def accepted(self, ordered: torch.Tensor) -> torch.Tensor:
        return ordered >= self.threshold


class Factor(_ParallelRule):
    """Fast-dLLM's factor rule: the largest n with (i + 1) * (1 - c_i) < factor for all i <= n."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def accepted(self, ordered: torch.Tensor) -> torch.Tensor:
        rank = torch.arange(1, ordered.shape[1] + 1, device=ordered.device)
        passes = (rank + 1) * (1 - ordered) < self.factor
        return passes.long().cumprod(dim=1).bool()


def commit_rule(config: GenerationConfig, steps_per_block: int) -> CommitRule:
    """The rule `config` asks for; `steps_per_block` only matters to the count schedule."""
    if config.threshold is not None:
        return Threshold(config.threshold)
    if config.factor is not None:
        return Factor(config.factor)
    return CountSchedule(steps_per_block, config.stochastic_transfer)

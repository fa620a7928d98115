"""The dilated schedule: a block's positions in a fixed order of spread-out groups, about log2 B calls per block."""

from __future__ import annotations

import math

import torch

from diffutron.errors import SettingError
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.predictions import Predictions
from diffutron.sampling.rules import Budget, CommitRule


def dilation_level(offsets: torch.Tensor, block_length: int) -> torch.Tensor:
    """The call (0, 1, ...) of a block at which each offset is committed: with P the power of two at least
    `block_length`, the offsets 0 and P/2 first, then the odd multiples of P/4, of P/8, ... down to the
    odd offsets; no two offsets of one level are adjacent. A negative offset (an earlier block's mask
    still open) comes before all of them."""
    bits = max(1, math.ceil(math.log2(block_length))) if block_length > 1 else 0
    lowest_bit = offsets & -offsets
    level = bits - torch.log2(lowest_bit.clamp(min=1).double()).round().long()
    first = 0 if bits < 2 else 1  # 0 joins P/2 unless they are neighbours
    level = torch.where(offsets == 0, first, level) - (0 if bits < 2 else 1)
    return torch.where(offsets < 0, -1, level)


class Dilated(CommitRule):
    """At each call, a row's due positions of its lowest dilation level left: spread over the block, so that
    the tokens decided together are far apart (and depend on each other little)."""

    name = "dilated"

    def __init__(self, block_length: int) -> None:
        self.block_length = block_length

    @classmethod
    def from_config(cls, config: GenerationConfig, steps_per_block: int) -> Dilated:
        return Dilated(config.block_length)

    @classmethod
    def check(cls, config: GenerationConfig) -> None:
        if config.stochastic_transfer:
            raise SettingError(
                "the dilated schedule replaces the transfer schedule: drop stochastic_transfer", "stochastic_transfer"
            )

    def choose(self, predictions: Predictions, budget: Budget | None) -> torch.Tensor:
        due = predictions.due
        level = torch.where(due, dilation_level(predictions.offsets, self.block_length), torch.iinfo(torch.long).max)
        return due & (level == level.amin(dim=1, keepdim=True))

"""Early commit: the count schedule, cut short once the model is sure of every open position."""

from __future__ import annotations

import torch

from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.predictions import Predictions
from diffutron.sampling.rules import Budget
from diffutron.sampling.rules.count import CountSchedule


class EarlyCommit(CountSchedule):
    """The count schedule's positions; but at a call where every position due in a row has a top-1/top-2
    probability gap of at least `commit_gap`, all of them (the row's block ends then)."""

    name = "early_commit"
    until_filled = True

    def __init__(self, steps_per_block: int, stochastic: bool, commit_gap: float) -> None:
        super().__init__(steps_per_block, stochastic)
        self.commit_gap = commit_gap

    @classmethod
    def from_config(cls, config: GenerationConfig, steps_per_block: int) -> EarlyCommit:
        assert config.commit_gap is not None  # the config requires its rule's knob
        return EarlyCommit(steps_per_block, config.stochastic_transfer, config.commit_gap)

    def choose(self, predictions: Predictions, budget: Budget | None) -> torch.Tensor:
        scheduled = super().choose(predictions, budget)
        due = predictions.due
        sure = (predictions.margin >= self.commit_gap) | ~due
        return scheduled | (due & sure.all(dim=1, keepdim=True))

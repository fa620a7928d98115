"""What the parallel rules share: at least the best-ranked position per row, plus those the rule accepts."""

from __future__ import annotations

import torch

from diffutron.errors import SettingError
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.predictions import Predictions
from diffutron.sampling.rules import Budget, CommitRule


class ParallelRule(CommitRule):
    """Runs a row's block until it is full; each call commits what `accepted` takes of the sorted scores."""

    @classmethod
    def check(cls, config: GenerationConfig) -> None:
        if config.remasking != "low_confidence":
            raise SettingError(
                f"{cls.name} decoding compares model confidences, so it needs remasking='low_confidence'", "remasking"
            )
        if config.stochastic_transfer:
            raise SettingError(
                f"{cls.name} decoding replaces the transfer schedule: drop stochastic_transfer", "stochastic_transfer"
            )

    def choose(self, predictions: Predictions, budget: Budget | None) -> torch.Tensor:
        score = self.ranking(predictions)
        eligible = torch.isfinite(score)
        ordered, order = score.sort(dim=1, descending=True)
        taken = self.accepted(ordered) & torch.isfinite(ordered)
        taken[:, 0] |= eligible.any(dim=1)
        return torch.zeros_like(eligible).scatter_(1, order, taken)

    def ranking(self, predictions: Predictions) -> torch.Tensor:
        """(rows, width): what orders the positions, best first; -inf where nothing is due."""
        return predictions.score

    def accepted(self, ordered: torch.Tensor) -> torch.Tensor:
        """Which of the rankings, sorted in decreasing order per row, to commit."""
        raise NotImplementedError

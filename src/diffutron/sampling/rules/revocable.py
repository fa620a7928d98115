"""Revocable commits: commit generously, then mask again the tokens the model no longer backs."""

from __future__ import annotations

import torch

from diffutron.sampling.predictions import Predictions
from diffutron.sampling.rules._parallel import ParallelRule


class Revocable(ParallelRule):
    """Each call commits every open mask whose confidence is at least `draft_threshold` (at least the best
    one), and masks again the block's earlier decided tokens whose probability, predicted again at this
    call, fell below `revoke_below`: the least probable first, and fewer than it commits (counting
    the committed tokens that are not the mask token), so that a block still fills within as many calls
    as it has masks and nothing is left masked at its end."""

    name = "revocable"
    revises = True

    def __init__(self, draft_threshold: float, revoke_below: float) -> None:
        self.draft_threshold = draft_threshold
        self.revoke_below = revoke_below

    def ranking(self, predictions: Predictions) -> torch.Tensor:
        return predictions.score.masked_fill(predictions.decided, -torch.inf)

    def accepted(self, ordered: torch.Tensor) -> torch.Tensor:
        return ordered >= self.draft_threshold

    def revoke(self, predictions: Predictions, committed: torch.Tensor) -> torch.Tensor:
        held = predictions.held_probability  # NaN where no token is held
        weak = held < self.revoke_below
        new = (committed & (predictions.tokens != predictions.mask_id)).sum(dim=1, keepdim=True)
        ordered = torch.where(weak, held, torch.inf).argsort(dim=1, stable=True)
        rank = torch.empty_like(ordered).scatter_(
            1, ordered, torch.arange(held.shape[1], device=held.device).expand_as(ordered)
        )
        return weak & (rank < new - 1)

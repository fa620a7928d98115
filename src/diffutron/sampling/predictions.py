"""What the model predicts at the positions due at one call, as the commit rules see it.

Two numbers are easily confused here. The **ranking score** (`score`) orders the positions a rule
may commit: the candidate's probability under low-confidence remasking, a uniform random number
under random remasking. The **probability** (`probability`) is always the model's probability of
the candidate token, and it is what a `StepEvent` reports for the tokens a call committed.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch


class Predictions:
    """Per position due at a call: the candidate token, its ranking score, and (computed the first
    time they are asked for, only at the due positions) its probability, the entropy of the
    position's distribution and the margin between its two most probable tokens.

    Every grid is (rows, width) over the canvas; where nothing is due, `tokens` holds the mask
    token, `score` is -inf, and `probability`, `entropy` and `margin` are NaN.
    """

    def __init__(
        self,
        shape: torch.Size,
        rows: torch.Tensor,
        columns: torch.Tensor,
        tokens: torch.Tensor,
        logits: torch.Tensor | None,
        mask_id: int,
        random_scores: torch.Tensor | None = None,
    ) -> None:
        """`rows`, `columns`: where each due position lies; `tokens`, `logits`: its candidate and its
        processed logits, one row per position; `random_scores`: the ranking scores of random remasking
        (None: the probabilities rank)."""
        self.shape = shape
        self.rows = rows
        self.columns = columns
        self.mask_id = mask_id
        self._tokens = tokens
        self._logits = logits
        self._random_scores = random_scores

    @classmethod
    def from_scores(cls, score: torch.Tensor) -> Predictions:
        """Predictions that only rank: every finite entry of `score` is due (for trying rules out)."""
        rows, columns = torch.isfinite(score).nonzero().unbind(dim=1)
        tokens = torch.zeros(rows.shape, dtype=torch.long, device=score.device)
        return cls(score.shape, rows, columns, tokens, None, 0, random_scores=score[rows, columns])

    @cached_property
    def tokens(self) -> torch.Tensor:
        """(rows, width) long: the candidate token of each due position."""
        return self._grid(self._tokens, self.mask_id, torch.long)

    @cached_property
    def score(self) -> torch.Tensor:
        """(rows, width) float32: the ranking score, -inf where nothing is due."""
        scores = self._candidate_probability if self._random_scores is None else self._random_scores
        return self._grid(scores, -math.inf, torch.float32)

    @cached_property
    def probability(self) -> torch.Tensor:
        """(rows, width) float32: the model's probability of the candidate token."""
        return self._grid(self._candidate_probability, math.nan, torch.float32)

    @cached_property
    def entropy(self) -> torch.Tensor:
        """(rows, width) float32: the entropy of the position's distribution, in nats (summed in float32
        even when the model computes in bfloat16: a sum over the vocabulary needs the precision)."""
        return self._grid(torch.special.entr(self._distribution.float()).sum(dim=-1), math.nan, torch.float32)

    @cached_property
    def margin(self) -> torch.Tensor:
        """(rows, width) float32: the top-1 minus the top-2 probability of the position's distribution."""
        top = self._distribution.float().topk(2, dim=-1).values
        return self._grid(top[:, 0] - top[:, 1], math.nan, torch.float32)

    @cached_property
    def due(self) -> torch.Tensor:
        """(rows, width) bool: the positions due at this call."""
        return self._grid(torch.ones_like(self.rows, dtype=torch.bool), False, torch.bool)

    @cached_property
    def _distribution(self) -> torch.Tensor:
        if self._logits is None:
            raise ValueError("these predictions carry ranking scores only")
        return self._logits.softmax(dim=-1)

    @cached_property
    def _candidate_probability(self) -> torch.Tensor:
        return self._distribution.gather(1, self._tokens[:, None]).squeeze(1)

    def _grid(self, values: torch.Tensor, fill: float | int | bool, dtype: torch.dtype) -> torch.Tensor:
        grid = torch.full(self.shape, fill, dtype=dtype, device=self.rows.device)
        grid[self.rows, self.columns] = values.to(dtype)
        return grid

"""What the model predicts at the positions due at one call, as the commit rules see it.

Two numbers are easily confused here. The **ranking score** (`score`) orders the positions a rule
may commit: the position's confidence under low-confidence remasking (by the `confidence` setting:
the candidate's probability, the margin between the two most probable tokens, or exp(-entropy)),
a uniform random number under random remasking. The **probability** (`probability`) is always the model's probability of
the candidate token, and it is what a `StepEvent` reports for the tokens a call committed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from diffutron.sampling.config import Confidence


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
        confidence: Confidence = "probability",
        offsets: torch.Tensor | None = None,
        held: torch.Tensor | None = None,
    ) -> None:
        """`rows`, `columns`: where each due position lies; `tokens`, `logits`: its candidate and its
        processed logits, one row per position; `random_scores`: the ranking scores of random remasking
        (None: the `confidence` measure ranks); `offsets`: each position's index in its row's block
        (negative for a mask of an earlier block still open); `held`: the token on the canvas at each
        position (the mask token where it is still open; only for rules that revise decided tokens)."""
        self.shape = shape
        self.rows = rows
        self.columns = columns
        self.mask_id = mask_id
        self._tokens = tokens
        self._logits = logits
        self._random_scores = random_scores
        self.confidence = confidence
        self._offsets = offsets
        self._held = held
        self.logprobs: CommitLogprobs | None = None  # set by a decoder asked for log-probabilities

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
        if self._random_scores is not None:
            return self._grid(self._random_scores, -math.inf, torch.float32)
        measure = {
            "probability": lambda: self._candidate_probability,
            "margin": lambda: self._margin,
            "entropy": lambda: (-self._entropy).exp(),  # in (0, 1], ranked as the negative entropy
        }[self.confidence]
        return self._grid(measure(), -math.inf, torch.float32)

    @cached_property
    def probability(self) -> torch.Tensor:
        """(rows, width) float32: the model's probability of the candidate token."""
        return self._grid(self._candidate_probability, math.nan, torch.float32)

    @cached_property
    def entropy(self) -> torch.Tensor:
        """(rows, width) float32: the entropy of the position's distribution, in nats (summed in float32
        even when the model computes in bfloat16: a sum over the vocabulary needs the precision)."""
        return self._grid(self._entropy, math.nan, torch.float32)

    @cached_property
    def margin(self) -> torch.Tensor:
        """(rows, width) float32: the top-1 minus the top-2 probability of the position's distribution."""
        return self._grid(self._margin, math.nan, torch.float32)

    @cached_property
    def offsets(self) -> torch.Tensor:
        """(rows, width) long: each due position's index in its row's block (negative for a mask of an
        earlier block still open), -1 where nothing is due."""
        if self._offsets is None:
            raise ValueError("these predictions carry no block offsets")
        return self._grid(self._offsets, -1, torch.long)

    @cached_property
    def due(self) -> torch.Tensor:
        """(rows, width) bool: the positions due at this call."""
        return self._grid(torch.ones_like(self.rows, dtype=torch.bool), False, torch.bool)

    @cached_property
    def decided(self) -> torch.Tensor:
        """(rows, width) bool: due positions that already hold a token (a rule that revises may mask it again)."""
        if self._held is None:
            return torch.zeros(self.shape, dtype=torch.bool, device=self.rows.device)
        return self._grid(self._held != self.mask_id, False, torch.bool)

    @cached_property
    def held_probability(self) -> torch.Tensor:
        """(rows, width) float32: the model's probability, at this call, of the token a decided position
        holds; NaN elsewhere."""
        if self._held is None:
            return torch.full(self.shape, math.nan, dtype=torch.float32, device=self.rows.device)
        decided = self._held != self.mask_id
        held = self._distribution.gather(1, torch.where(decided, self._held, 0)[:, None]).squeeze(1)
        return self._grid(torch.where(decided, held, math.nan), math.nan, torch.float32)

    @cached_property
    def _distribution(self) -> torch.Tensor:
        if self._logits is None:
            raise ValueError("these predictions carry ranking scores only")
        return self._logits.softmax(dim=-1)

    @cached_property
    def _entropy(self) -> torch.Tensor:
        return torch.special.entr(self._distribution.float()).sum(dim=-1)

    @cached_property
    def _margin(self) -> torch.Tensor:
        top = self._distribution.float().topk(2, dim=-1).values
        return top[:, 0] - top[:, 1]

    @cached_property
    def _candidate_probability(self) -> torch.Tensor:
        return self._distribution.gather(1, self._tokens[:, None]).squeeze(1)

    def _grid(self, values: torch.Tensor, fill: float | int | bool, dtype: torch.dtype) -> torch.Tensor:
        """`values` (one per due position, each a number or a vector) placed on the canvas grid."""
        grid = torch.full((*self.shape, *values.shape[1:]), fill, dtype=dtype, device=self.rows.device)
        grid[self.rows, self.columns] = values.to(dtype)
        return grid


@dataclass(frozen=True)
class CommitLogprobs:
    """Per canvas position: the log-probability its candidate had in the distribution it was drawn
    from (after the penalties, the bias, the temperature and the truncation), and the `k` likeliest
    tokens of that same distribution with theirs, likeliest first. For a diffusion model this is a
    token's probability at the call that committed it, not a left-to-right factorisation.
    NaN (token -1) where nothing is reported."""

    logprob: torch.Tensor  # (rows, width) float32
    top_tokens: torch.Tensor  # (rows, width, k) long
    top_logprobs: torch.Tensor  # (rows, width, k) float32

    @classmethod
    def at(cls, predictions: Predictions, distribution: torch.Tensor, k: int) -> CommitLogprobs:
        """From `distribution` (positions, vocab), the log-probabilities the candidates were drawn from."""
        top = distribution.topk(min(k, distribution.shape[1]), dim=-1)
        chosen = distribution.gather(1, predictions._tokens[:, None]).squeeze(1)
        return cls(
            predictions._grid(chosen, math.nan, torch.float32),
            predictions._grid(top.indices, -1, torch.long),
            predictions._grid(top.values, math.nan, torch.float32),
        )

    def merged(self, newer: CommitLogprobs) -> CommitLogprobs:
        """These records, overwritten where `newer` reports (a position committed again after a revision)."""
        return CommitLogprobs(
            torch.where(newer.logprob.isnan(), self.logprob, newer.logprob),
            torch.where(newer.top_tokens < 0, self.top_tokens, newer.top_tokens),
            torch.where(newer.top_logprobs.isnan(), self.top_logprobs, newer.top_logprobs),
        )

    def where(self, reported: torch.Tensor) -> CommitLogprobs:
        """Only at the positions `reported` (rows, width) bool: the tokens committed at the call."""
        wide = reported[..., None]
        return CommitLogprobs(
            torch.where(reported, self.logprob, math.nan),
            torch.where(wide, self.top_tokens, -1),
            torch.where(wide, self.top_logprobs, math.nan),
        )

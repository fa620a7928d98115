"""Log-probabilities of the answer tokens: what `Diffutron.generate(..., logprobs=k)` returns.

For a masked diffusion model a token's log-probability is the one it had in the distribution it
was drawn from at the model call that committed it (after the penalties, the logit bias, the
temperature and the truncation; at temperature 0 the processed logits' own distribution), not a
left-to-right factorisation: the tokens of an answer are committed in any order, each at its call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffutron.errors import DiffutronError
from diffutron.sampling.predictions import CommitLogprobs
from diffutron.sampling.sampler import StepCallback, StepEvent

MAX_TOP_LOGPROBS = 20  # alternatives per token, as OpenAI allows


@dataclass(frozen=True)
class Alternative:
    """A token of the distribution a position was drawn from, with its log-probability."""

    token: int
    text: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob(Alternative):
    """An answer token, its log-probability and the likeliest tokens of the same distribution (likeliest
    first; tokens the truncation removed are left out)."""

    top: tuple[Alternative, ...] = ()


@dataclass(frozen=True)
class ScoredAnswer:
    """An answer with the log-probability of each of its tokens, in answer order."""

    text: str
    tokens: tuple[TokenLogprob, ...]


def checked_top_logprobs(value: object) -> int:
    """How many alternatives per token: an integer from 0 to MAX_TOP_LOGPROBS."""
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOP_LOGPROBS):
        raise DiffutronError(
            f"logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS} (alternatives per token), got {value!r}"
        )
    return value


class LogprobRecorder:
    """A step callback that keeps, per canvas position, what its committing call reported (then calls `then`)."""

    def __init__(self, then: StepCallback | None = None) -> None:
        self.then = then
        self.recorded: CommitLogprobs | None = None

    def __call__(self, event: StepEvent) -> None:
        reported = event.logprobs
        if reported is None:
            raise DiffutronError("the decoder reports no log-probabilities: create it with logprobs=k")
        if self.recorded is None:
            self.recorded = reported
        else:
            self.recorded = CommitLogprobs(
                torch.where(reported.logprob.isnan(), self.recorded.logprob, reported.logprob),
                torch.where(reported.top_tokens < 0, self.recorded.top_tokens, reported.top_tokens),
                torch.where(reported.top_logprobs.isnan(), self.recorded.top_logprobs, reported.top_logprobs),
            )
        if self.then is not None:
            self.then(event)

    def tokens(self, row: int, positions: range, canvas_row: list[int], decode) -> tuple[TokenLogprob, ...]:
        """The recorded tokens of `row` at `positions` (`decode`: one token id to its text)."""
        if self.recorded is None:
            return ()
        logprob = self.recorded.logprob[row, positions.start : positions.stop].tolist()
        top_tokens = self.recorded.top_tokens[row, positions.start : positions.stop].tolist()
        top_values = self.recorded.top_logprobs[row, positions.start : positions.stop].tolist()
        return tuple(
            TokenLogprob(
                canvas_row[position],
                decode(canvas_row[position]),
                logprob[index],
                tuple(
                    Alternative(token, decode(token), value)
                    for token, value in zip(top_tokens[index], top_values[index], strict=True)
                    if value != -math.inf
                ),
            )
            for index, position in enumerate(positions)
        )

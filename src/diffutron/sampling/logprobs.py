"""Log-probabilities of the answer tokens: what `Diffutron.generate(..., logprobs=k)` returns.

For a masked diffusion model a token's log-probability is the one it had in the distribution it
was drawn from at the model call that committed it (after the penalties, the logit bias, the
temperature and the truncation; at temperature 0 the processed logits' own distribution), not a
left-to-right factorisation: the tokens of an answer are committed in any order, each at its call.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.sampling.predictions import CommitLogprobs
from diffutron.sampling.sampler import StepCallback, StepEvent
from diffutron.sampling.stopping import AnswerStops

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
        self.recorded = reported if self.recorded is None else self.recorded.merged(reported)
        if self.then is not None:
            self.then(event)

    def tokens(
        self, row: int, positions: range, canvas_row: Sequence[int], decode: Callable[[int], str]
    ) -> tuple[TokenLogprob, ...]:
        """The recorded tokens of `row` at `positions` (`decode`: one token id to its text)."""
        if self.recorded is None:
            return ()
        return token_logprobs(self.recorded, row, positions, canvas_row, 0, decode)


class RowLogprobs:
    """What the committing calls reported for one row's answer region (`length` positions from `start`),
    kept apart from its batch: a server's rows join and leave a running decoder, so their indices change."""

    def __init__(self, start: int, length: int) -> None:
        self.start = start
        self.length = length
        self.recorded: CommitLogprobs | None = None

    def record(self, reported: CommitLogprobs, row: int) -> None:
        """Keep what one call reported for this row, now at index `row` of its decoder."""
        region = slice(self.start, self.start + self.length)
        own = CommitLogprobs(
            reported.logprob[row : row + 1, region],
            reported.top_tokens[row : row + 1, region],
            reported.top_logprobs[row : row + 1, region],
        )
        self.recorded = own if self.recorded is None else self.recorded.merged(own)

    def tokens(
        self, positions: range, canvas_row: Sequence[int], decode: Callable[[int], str]
    ) -> tuple[TokenLogprob, ...]:
        """The recorded tokens at canvas `positions` (inside the region)."""
        if self.recorded is None:
            return ()
        return token_logprobs(self.recorded, 0, positions, canvas_row, self.start, decode)


def token_logprobs(
    recorded: CommitLogprobs,
    row: int,
    positions: range,
    canvas_row: Sequence[int],
    origin: int,
    decode: Callable[[int], str],
) -> tuple[TokenLogprob, ...]:
    """The tokens of `canvas_row` at `positions`, scored from `recorded` (its column 0: canvas position `origin`)."""
    columns = slice(positions.start - origin, positions.stop - origin)
    logprob = recorded.logprob[row, columns].tolist()
    top_tokens = recorded.top_tokens[row, columns].tolist()
    top_values = recorded.top_logprobs[row, columns].tolist()
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


def scored_positions(
    tokenizer: PreTrainedTokenizerBase, stops: AnswerStops, canvas_row: Sequence[int], start: int, end: int
) -> range:
    """The canvas positions of an answer's tokens: from `start` up to `end`, the first mask, EOS or pad,
    and those wholly before the earliest stop text (`stops`) where one is there."""
    tokens = stops.decided(canvas_row[start:end])
    tokens = tokens[: stops.stop_token(tokens)]
    decode = lambda part: tokenizer.decode(part, skip_special_tokens=True)  # noqa: E731
    text, ended = stops.cut(decode(tokens))
    if not ended:
        return range(start, start + len(tokens))
    return range(start, start + tokens_within(tokens, len(text), decode))  # those wholly before the stop text


def tokens_within(tokens: Sequence[int], length: int, decode: Callable[[Sequence[int]], str]) -> int:
    """How many of `tokens`, from the first, decode to at most `length` characters (a text that only
    grows with each token, so the count is found by bisection)."""
    return bisect.bisect_right(range(len(tokens) + 1), length, key=lambda count: len(decode(tokens[:count]))) - 1

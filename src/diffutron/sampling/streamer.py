"""One row's answer while the sampler decides it: the text so far, what may be streamed, how it ended.

A masked diffusion model does not write left to right, but its blocks are decided in order, so
the decided prefix of the answer (every token up to the first mask) only grows. Its text is
streamed as it grows, holding back what a later token could still change: the start of a stop
text in the making and an unfinished character. The streamed pieces therefore join to the final
answer, the same text `Diffutron.answer` extracts from the finished canvas: both read the end
through `AnswerStops` (`sampling/stopping.py`), as the decoder's stopper does.

The shape is that of transformers' streamers: `put` after each model call, `end` once the
sampler is done with the row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from diffutron.sampling.stopping import AnswerStops

logger = logging.getLogger("diffutron.sampling")


class AnswerStreamer:
    """Follows the answer region of one canvas row (`length` positions from `start`)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: AnswerStops, start: int, length: int) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.start = start
        self.length = length
        self.decided = -1  # decided positions at the last look
        self.sent = ""  # text handed out by `put` so far
        self.text: str | None = None  # the final answer, once known
        self.finish_reason: str | None = None  # "stop" (ended by itself or at a stop string) or "length"

    @property
    def finished(self) -> bool:
        return self.text is not None

    def put(self, row: Sequence[int]) -> str:
        """Look at the row after a model call; returns the text to append to what was sent ("" if none)."""
        region = self.region(row)
        decided = len(self.stops.decided(region))
        if decided == self.decided:
            return ""
        self.decided = decided
        raw, ended = self._read(region)
        if ended:
            return self._finish(raw.strip(), "stop")
        if decided == self.length:
            return self._finish(raw.strip(), "length")
        streamable = self.stops.streamable(raw).strip()
        if len(streamable) > len(self.sent) and streamable.startswith(self.sent):
            delta, self.sent = streamable[len(self.sent) :], streamable
            return delta
        return ""

    def end(self, row: Sequence[int]) -> str:
        """The sampler is done with the row: settle the answer; returns the text still to send."""
        if self.finished:
            return ""
        delta = self.put(row)
        if self.finished:
            return delta
        raw, ended = self._read(self.region(row))  # masks left: the answer stops at the first
        return delta + self._finish(raw.strip(), "stop" if ended else "length")

    def region(self, row: Sequence[int]) -> list[int]:
        """The row's answer positions."""
        return list(row[self.start : self.start + self.length])

    def _read(self, region: list[int]) -> tuple[str, bool]:
        return self.stops.read(lambda tokens: self.tokenizer.decode(tokens, skip_special_tokens=True), region)

    def _finish(self, text: str, reason: str) -> str:
        self.text, self.finish_reason = text, reason
        if not text.startswith(self.sent):  # a tokenizer whose prefixes decode differently in context
            logger.warning("streamed text %r is not a prefix of the answer %r", self.sent, text)
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta

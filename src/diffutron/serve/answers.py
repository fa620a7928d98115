"""One row's answer while the sampler decides it: the text so far, what may be streamed, how it ended.

A masked diffusion model does not write left to right, but its blocks are decided in order, so
the decided prefix of the answer (every token up to the first mask) only grows. Its text is
streamed as it grows, holding back what a later token could still change: the end of a stop
string in the making and an incomplete UTF-8 character. The streamed pieces therefore join
to the final answer, the same text `Diffutron.answer` extracts from the finished canvas.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from diffutron.lm import Diffutron
from diffutron.model.chat import ANSWER_END, cut_answer

logger = logging.getLogger("diffutron.serve")
REPLACEMENT_CHARACTER = "\ufffd"  # what an incomplete UTF-8 character decodes to


class AnswerTracker:
    """Follows the generated region of one canvas row (`length` positions from `start`)."""

    def __init__(self, lm: Diffutron, start: int, length: int, stops: Sequence[str]) -> None:
        self.lm = lm
        self.start = start
        self.length = length
        self.stops = tuple(stops)
        self.held_back = (ANSWER_END, *self.stops)
        self.decided = -1  # decided positions at the last look
        self.sent = ""  # text handed out by `update` so far
        self.text: str | None = None  # the final answer, once known
        self.finish_reason: str | None = None  # "stop" (ended by itself or at a stop string) or "length"

    @property
    def finished(self) -> bool:
        return self.text is not None

    def update(self, row: Sequence[int]) -> str:
        """Look at the row after a model call; returns the text to append to what was sent ("" if none)."""
        tokens = self._decided_tokens(row)
        if len(tokens) == self.decided:
            return ""
        self.decided = len(tokens)
        raw, ended = self._read(tokens)
        if ended:
            return self._finish(cut_answer(raw), "stop")
        if len(tokens) == self.length:
            return self._finish(cut_answer(raw), "length")
        streamable = self._hold_back(raw).strip()
        if len(streamable) > len(self.sent) and streamable.startswith(self.sent):
            delta, self.sent = streamable[len(self.sent) :], streamable
            return delta
        return ""

    def close(self, row: Sequence[int]) -> str:
        """The sampler is done with the row: settle the answer; returns the text still to send."""
        if self.finished:
            return ""
        delta = self.update(row)
        if self.finished:
            return delta
        raw, ended = self._read(self._decided_tokens(row))  # masks left: the answer stops at the first
        return delta + self._finish(cut_answer(raw), "stop" if ended else "length")

    def _decided_tokens(self, row: Sequence[int]) -> list[int]:
        region = list(row[self.start : self.start + self.length])
        mask = self.lm.special.mask
        return region[: region.index(mask)] if mask in region else region

    def _read(self, tokens: list[int]) -> tuple[str, bool]:
        """The text of the decided tokens cut at the answer's end, and whether it has ended."""
        stops = self.lm.special.stops
        ended = False
        for index, token in enumerate(tokens):
            if token in stops:
                tokens, ended = tokens[:index], True
                break
        text = self.lm.tokenizer.decode(tokens, skip_special_tokens=True)
        for stop in self.held_back:
            if stop in text:
                text, ended = text.split(stop, 1)[0], True
        return text, ended

    def _hold_back(self, text: str) -> str:
        """`text` without a trailing part that later tokens could still turn into something else."""
        cut = len(text)
        for stop in self.held_back:
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    cut = min(cut, len(text) - size)
                    break
        text = text[:cut]
        return text.rstrip(REPLACEMENT_CHARACTER)

    def _finish(self, text: str, reason: str) -> str:
        self.text, self.finish_reason = text, reason
        if not text.startswith(self.sent):  # a tokenizer whose prefixes decode differently in context
            logger.warning("streamed text %r is not a prefix of the answer %r", self.sent, text)
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta

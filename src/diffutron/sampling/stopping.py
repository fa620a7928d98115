"""Where an answer ends (`AnswerStops`), and the decoder's stopping criterion built on it (`AnswerEnd`).

`AnswerStops` is the one definition: the answer is the decided prefix of its region (every token
up to the first mask), cut at its first stop token (EOS, pad) and then at its first stop text
(`[/Answer]`, then a request's own stop strings), surrounding whitespace removed. The decoder's
stopper, the streamer (`sampling/streamer.py`), the frames' visible positions
(`sampling/frames.py`) and `Diffutron.answer` all read the end through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from transformers import PreTrainedTokenizerBase

from diffutron.model.chat import ANSWER_END
from diffutron.model.tokens import SpecialIds

REPLACEMENT_CHARACTER = "\ufffd"  # what a decoder writes for the bytes of an unfinished character


@dataclass(frozen=True)
class AnswerStops:
    """The tokens and texts that end an answer, and how they cut it.

    `AnswerStops()` is the chat format's end alone, for texts without their token ids.
    """

    stop_texts: tuple[str, ...] = (ANSWER_END,)
    stop_ids: frozenset[int] = frozenset()
    mask_id: int | None = None  # None: every token given is decided (text-only use)

    @classmethod
    def for_tokenizer(cls, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str] = ()) -> AnswerStops:
        """The chat format's end (`[/Answer]`) and the tokenizer's stop tokens, then `stops` (a request's own)."""
        ids = SpecialIds.from_tokenizer(tokenizer)
        return cls(stop_ids=frozenset(ids.stops), mask_id=ids.mask).with_texts(stops)

    def with_texts(self, stops: Sequence[str]) -> AnswerStops:
        """These stops and, after them, `stops` (each once)."""
        return replace(self, stop_texts=tuple(dict.fromkeys((*self.stop_texts, *stops))))

    def decided(self, region: Sequence[int]) -> list[int]:
        """The tokens before the first mask."""
        region = list(region)
        return region[: region.index(self.mask_id)] if self.mask_id in region else region

    def stop_token(self, tokens: Sequence[int]) -> int | None:
        """The index of the first stop token in `tokens`, if there is one."""
        return next((index for index, token in enumerate(tokens) if token in self.stop_ids), None)

    def cut(self, text: str) -> tuple[str, bool]:
        """`text` before its earliest stop text, and whether there was one."""
        found = [index for index in map(text.find, self.stop_texts) if index >= 0]
        return (text[: min(found)], True) if found else (text, False)

    def read(self, decode: Callable[[list[int]], str], region: Sequence[int]) -> tuple[str, bool]:
        """The text of the decided prefix of `region` cut at the answer's end (untrimmed), and whether it ended."""
        tokens = self.decided(region)
        stop = self.stop_token(tokens)
        text, cut = self.cut(decode(tokens if stop is None else tokens[:stop]))
        return text, cut or stop is not None

    def answer(self, tokenizer: PreTrainedTokenizerBase, region: Sequence[int]) -> str:
        """The answer in `region`: its decided prefix cut at the end, trimmed."""
        return self.read(lambda tokens: tokenizer.decode(tokens, skip_special_tokens=True), region)[0].strip()

    def streamable(self, text: str) -> str:
        """`text` without a trailing part that later tokens could still change: the start of a stop text
        in the making, and an unfinished character."""
        cut = len(text)
        for stop in self.stop_texts:
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    cut = min(cut, len(text) - size)
                    break
        return text[:cut].rstrip(REPLACEMENT_CHARACTER)

    def visible(self, pieces: Sequence[str | None], ids: Sequence[int] | None = None) -> list[str | None]:
        """The positions of a region that show its answer, given each position's text (None: masked).

        All of them until the end lies in the decided prefix; then those before it (the one holding
        the start of a stop text cut before it), trailing whitespace trimmed as the answer is trimmed.
        With the positions' token `ids`, a stop token ends it too; without, only the stop texts do.
        """
        decided = decided_texts(pieces)
        stop = self.stop_token(ids[: len(decided)]) if ids is not None else None
        text, ended = self.cut("".join(decided[:stop]))
        if not ended and stop is None:
            return list(pieces)
        kept: list[str | None] = []
        start = 0
        for piece in decided:
            if start >= len(text):
                break
            kept.append(piece[: len(text) - start])
            start += len(piece)
        while kept and not (kept[-1] or "").strip():
            kept.pop()
        if kept:
            kept[-1] = (kept[-1] or "").rstrip()
        return kept


def decided_texts(pieces: Sequence[str | None]) -> list[str]:
    """The texts of the positions before the first masked one (None)."""
    texts = []
    for piece in pieces:
        if piece is None:
            break
        texts.append(piece)
    return texts


class AnswerEnd:
    """The decoder's stopping criterion: tracks, per row, the decided prefix of the generated region
    and whether it holds the answer's end (by the row's `AnswerStops`).

    An answer is complete once a stop token or a stop text lies inside the prefix of the region in
    which every position is decided: committed tokens never change, so the extracted answer can no
    longer change either. Only the newly decided tokens are looked at, with a short window before
    them for a stop text that spans the boundary.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, mask_id: int, stop_ids: Sequence[int], stop_texts: Sequence[str]
    ) -> None:
        self.tokenizer = tokenizer
        self.mask_id = mask_id
        self.stops = AnswerStops(tuple(stop_texts), frozenset(stop_ids), mask_id)
        self.rows: list[AnswerStops] = []  # each row's own stops
        self.frontier: list[int] = []
        self.done: list[bool] = []

    def add(self, rows: int, stops: Sequence[AnswerStops] | None = None) -> None:
        """Append rows; `stops` gives each its own (a request's stop strings), else the stopper's."""
        self.rows += list(stops) if stops is not None else [self.stops] * rows
        self.frontier += [0] * rows
        self.done += [False] * rows

    def keep(self, rows: Sequence[int]) -> None:
        self.rows = [self.rows[row] for row in rows]
        self.frontier = [self.frontier[row] for row in rows]
        self.done = [self.done[row] for row in rows]

    def update(self, answers: list[list[int]]) -> list[bool]:
        """Look at the newly decided tokens of each row's answer region (read from the device by the
        caller, once per call for all rows); returns the per-row `done` flags."""
        for row, tokens in enumerate(answers):
            start, stops = self.frontier[row], self.rows[row]
            end = _first(tokens, self.mask_id, start)
            if self.done[row] or end == start:
                continue
            self.frontier[row] = end
            if any(token in stops.stop_ids for token in tokens[start:end]):
                self.done[row] = True
            elif stops.stop_texts:
                # a stop text of n bytes spans at most n tokens (+1 for a partial first one)
                lookback = max(len(text.encode()) for text in stops.stop_texts) + 1
                window = tokens[max(0, start - lookback) : end]
                self.done[row] = stops.cut(self.tokenizer.decode(window, skip_special_tokens=False))[1]
        return self.done


def _first(tokens: list[int], token: int, start: int) -> int:
    """Index of the first `token` at or after `start`; len(tokens) if there is none."""
    try:
        return tokens.index(token, start)
    except ValueError:
        return len(tokens)

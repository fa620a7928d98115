"""Detect finished answers on token ids, looking only at what was newly decided."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase


class AnswerEnd:
    """Tracks, per row, the decided prefix of the generated region and whether it holds the end.

    An answer is complete once a stop token (EOS/pad) or a stop text (`[/Answer]`) lies
    inside the prefix of the region in which every position is decided: committed tokens
    never change, so the extracted answer can no longer change either.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, mask_id: int, stop_ids: Sequence[int], stop_texts: Sequence[str]
    ) -> None:
        self.tokenizer = tokenizer
        self.mask_id = mask_id
        self.stop_ids = frozenset(stop_ids)
        self.stop_texts = tuple(stop_texts)
        # a stop text of n bytes spans at most n tokens (+1 for a partial first one)
        self.lookback = max((len(t.encode()) for t in self.stop_texts), default=0) + 1
        self.frontier: list[int] = []
        self.done: list[bool] = []

    def add(self, rows: int) -> None:
        self.frontier += [0] * rows
        self.done += [False] * rows

    def keep(self, rows: Sequence[int]) -> None:
        self.frontier = [self.frontier[row] for row in rows]
        self.done = [self.done[row] for row in rows]

    def update(self, answers: list[list[int]]) -> list[bool]:
        """Look at the newly decided tokens of each row's answer region (read from the device by the
        caller, once per call for all rows); returns the per-row `done` flags."""
        for row, tokens in enumerate(answers):
            start = self.frontier[row]
            end = _first(tokens, self.mask_id, start)
            if self.done[row] or end == start:
                continue
            self.frontier[row] = end
            if any(token in self.stop_ids for token in tokens[start:end]):
                self.done[row] = True
            elif self.stop_texts:
                window = tokens[max(0, start - self.lookback) : end]
                text = self.tokenizer.decode(window, skip_special_tokens=False)
                self.done[row] = any(stop in text for stop in self.stop_texts)
        return self.done


def _first(tokens: list[int], token: int, start: int) -> int:
    """Index of the first `token` at or after `start`; len(tokens) if there is none."""
    try:
        return tokens.index(token, start)
    except ValueError:
        return len(tokens)

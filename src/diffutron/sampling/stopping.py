"""Detect finished answers on token ids, looking only at what was newly decided."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase


class AnswerEnd:
    """Tracks, per row, the decided prefix of the generated region and whether it holds the end.

    An answer is complete once a stop token (EOS/pad) or a stop text (`[/Answer]`) lies
    inside the prefix of the region in which every position is decided: committed tokens
    never change, so the extracted answer can no longer change either.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        region: torch.Tensor,
        mask_id: int,
        stop_ids: Sequence[int],
        stop_texts: Sequence[str],
    ) -> None:
        self.tokenizer = tokenizer
        self.region = region
        self.mask_id = mask_id
        self.stop_ids = torch.tensor(sorted(set(stop_ids)), device=region.device)
        self.stop_texts = tuple(stop_texts)
        # a stop text of n bytes spans at most n tokens (+1 for a partial first one)
        self.lookback = max((len(t.encode()) for t in self.stop_texts), default=0) + 1
        rows = region.shape[0]
        self.frontier = [0] * rows
        self.done = torch.zeros(rows, dtype=torch.bool, device=region.device)

    def update(self, canvas: torch.Tensor) -> torch.Tensor:
        """Look at the newly decided tokens; returns the per-row `done` flags."""
        tokens = canvas.gather(1, self.region)
        decided = (tokens != self.mask_id).long().cumprod(dim=1).sum(dim=1).tolist()
        for row, end in enumerate(decided):
            start = self.frontier[row]
            if self.done[row] or end == start:
                continue
            self.frontier[row] = end
            fresh = tokens[row, start:end]
            if torch.isin(fresh, self.stop_ids).any():
                self.done[row] = True
            elif self.stop_texts:
                window = tokens[row, max(0, start - self.lookback) : end].tolist()
                text = self.tokenizer.decode(window, skip_special_tokens=False)
                self.done[row] = any(stop in text for stop in self.stop_texts)
        return self.done

"""Batch unpadded token rows for the two kinds of training data (docs/reference-behaviour.md, section 4).

Pretraining: pad positions are neither attended to nor labelled, so they are never masked and
never scored. SFT: pad positions are labelled and attended to (no attention mask), because the
model must learn to fill the tail of the canvas after the answer with padding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from diffutron.errors import DiffutronError
from diffutron.model.tokens import IGNORE_INDEX


def padded_width(rows: Sequence[Sequence[int]], multiple: int, max_length: int) -> int:
    """The longest row, rounded up to a multiple of `multiple` but never past `max_length`.

    Tensor-core kernels run best on sizes that are multiples of 64; shorter batches stay short.
    """
    longest = max(len(row) for row in rows)
    return min(-(-longest // multiple) * multiple, max(longest, max_length))


def _right_pad(rows: Sequence[Sequence[int]], value: int, width: int) -> torch.Tensor:
    batch = torch.full((len(rows), width), value, dtype=torch.long)
    for index, row in enumerate(rows):
        batch[index, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return batch


def _column(features: Sequence[Mapping[str, Any]], name: str) -> list[list[int]]:
    try:
        rows = [list(feature[name]) for feature in features]
    except KeyError as error:
        found = ", ".join(sorted(features[0])) if features else "nothing"
        raise DiffutronError(f"training rows need a {name!r} column; found: {found}") from error
    if any(len(row) == 0 for row in rows):
        raise DiffutronError("a training row has no tokens; rebuild the dataset without empty rows")
    return rows


@dataclass(frozen=True)
class PretrainCollator:
    """`input_ids` rows -> padded ids, attention mask, labels (-100 on padding)."""

    pad_token_id: int
    max_length: int
    pad_to_multiple_of: int = 1

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [row[: self.max_length] for row in _column(features, "input_ids")]
        width = padded_width(rows, self.pad_to_multiple_of, self.max_length)
        input_ids = _right_pad(rows, self.pad_token_id, width)
        attention_mask = _right_pad([[1] * len(row) for row in rows], 0, width)
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass(frozen=True)
class SFTCollator:
    """`input_ids` + `labels` rows (prompt labelled -100) -> right-padded, pad labelled, no mask.

    Padding to a multiple (`pad_to_multiple_of`) adds labelled pad positions like any other padding.
    """

    pad_token_id: int
    max_length: int
    pad_to_multiple_of: int = 1

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        ids = _column(features, "input_ids")
        labels = _column(features, "labels")
        if any(len(a) != len(b) for a, b in zip(ids, labels)):
            raise DiffutronError("an SFT row's input_ids and labels differ in length; rebuild the dataset")
        ids = [row[: self.max_length] for row in ids]
        labels = [row[: self.max_length] for row in labels]
        width = padded_width(ids, self.pad_to_multiple_of, self.max_length)
        padded_ids = _right_pad(ids, self.pad_token_id, width)
        padded_labels = _right_pad(labels, self.pad_token_id, width)
        return {"input_ids": padded_ids, "labels": padded_labels}

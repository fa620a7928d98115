"""Pretraining and SFT batches (docs/reference-behaviour.md, section 4): what is padded, labelled,
attended and masked."""

from __future__ import annotations

import pytest
import torch

from diffutron.errors import DiffutronError
from diffutron.model.tokens import IGNORE_INDEX
from diffutron.training.collators import PretrainCollator, SFTCollator
from diffutron.training.objective import MDLMObjective
from helpers.training_data import sft_rows


def test_pretrain_padding_is_unlabelled_and_unattended():
    batch = PretrainCollator(pad_token_id=0, max_length=4)(
        [{"input_ids": [5, 6, 7]}, {"input_ids": [8]}, {"input_ids": [9, 9, 9, 9, 9, 9]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0], [9, 9, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[5, 6, 7, -100], [8, -100, -100, -100], [9, 9, 9, 9]]


def test_sft_batch_masks_exactly_the_answer_and_padding(tiny_tokenizer):
    ids, labels, prompt_lengths = sft_rows(tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    batch = SFTCollator(pad_token_id=pad, max_length=512)(
        [{"input_ids": i, "labels": label} for i, label in zip(ids, labels)]
    )
    assert set(batch) == {"input_ids", "labels"}  # no attention mask: padding is attended to
    width = max(map(len, ids))
    for row, (row_ids, prompt_length) in enumerate(zip(ids, prompt_lengths)):
        expected_ids = row_ids + [pad] * (width - len(row_ids))
        assert batch["input_ids"][row].tolist() == expected_ids
        expected_labels = [IGNORE_INDEX] * prompt_length + expected_ids[prompt_length:]
        assert batch["labels"][row].tolist() == expected_labels  # pad positions labelled with pad
    # at t = 1 every maskable position is masked: exactly the answer and the padding, never the prompt
    noisy, masked = MDLMObjective().corrupt(
        batch["input_ids"], batch["labels"], torch.ones(len(ids)), tiny_tokenizer.mask_token_id
    )
    for row, prompt_length in enumerate(prompt_lengths):
        assert not masked[row, :prompt_length].any()
        assert masked[row, prompt_length:].all()
        assert torch.equal(noisy[row, :prompt_length], batch["input_ids"][row, :prompt_length])


def test_sft_rows_are_cut_at_max_length():
    batch = SFTCollator(pad_token_id=0, max_length=3)(
        [{"input_ids": [4, 5, 6, 7, 8], "labels": [-100, -100, 6, 7, 8]}, {"input_ids": [9], "labels": [9]}]
    )
    assert batch["input_ids"].tolist() == [[4, 5, 6], [9, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 6], [9, 0, 0]]


def test_malformed_rows_are_reported():
    with pytest.raises(DiffutronError, match="differ in length"):
        SFTCollator(pad_token_id=0, max_length=8)([{"input_ids": [1, 2], "labels": [1]}])
    with pytest.raises(DiffutronError, match="'labels' column; found: input_ids"):
        SFTCollator(pad_token_id=0, max_length=8)([{"input_ids": [1, 2]}])

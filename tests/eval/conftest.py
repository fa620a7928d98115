"""Fixtures of the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers.processors import TemplateProcessing

from helpers.cetvel_rows import write_cetvel_rows
from helpers.tiny import build_tokenizer


@pytest.fixture()
def cetvel_data_dir(tmp_path: Path) -> Path:
    """A directory of `<task>.jsonl` files in each CETVEL dataset's schema."""
    return write_cetvel_rows(tmp_path)


@pytest.fixture(scope="session")
def bos_eos_tokenizer():
    """A tiny tokenizer that adds <bos> ... <eos> around every text, as mmBERT's adds CLS/SEP."""
    tokenizer = build_tokenizer()
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A <eos>",
        special_tokens=[("<bos>", tokenizer.bos_token_id), ("<eos>", tokenizer.eos_token_id)],
    )
    return tokenizer

"""Fixtures of the training tests: a tokenizer directory, prepared data directories, recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers.tiny import TURKISH_TEXT
from helpers.training_data import pretrain_sections, save_dataset, sft_rows, write_recipe


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    path = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def pretrain_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """One sentence per row (unpadded, EOS appended), repeated so a tiny model can learn it."""
    sentences = [line for line in TURKISH_TEXT.replace(". ", ".\n").splitlines() if len(line) > 10]
    rows = [tiny_tokenizer(s, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id] for s in sentences]
    return save_dataset(tmp_path_factory.mktemp("pretrain") / "data", {"input_ids": rows * 4})


@pytest.fixture(scope="session")
def sft_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    ids, labels, _ = sft_rows(tiny_tokenizer)
    return save_dataset(tmp_path_factory.mktemp("sft") / "data", {"input_ids": ids * 4, "labels": labels * 4})


@pytest.fixture
def pretrain_recipe(tmp_path, tokenizer_dir, pretrain_dir):
    """Write a from-scratch pretraining recipe; keyword sections update the defaults."""

    def make(name: str = "recipe.yaml", **changes: Any) -> Path:
        sections = pretrain_sections(tmp_path / "run", tokenizer_dir, pretrain_dir, **changes)
        return write_recipe(tmp_path / name, **sections)

    return make

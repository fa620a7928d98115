"""Fixtures of the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cetvel_rows import write_cetvel_rows


@pytest.fixture()
def cetvel_data_dir(tmp_path: Path) -> Path:
    """A directory of `<task>.jsonl` files in each CETVEL dataset's schema."""
    return write_cetvel_rows(tmp_path)

"""Prepared datasets: shards + manifest appear together or not at all; loading checks what they hold."""

from __future__ import annotations

import pytest
from datasets import Dataset

from diffutron.data.packing import PackingCounts, pack
from diffutron.data.prepared import length_statistics, load_prepared, write_prepared
from diffutron.errors import DiffutronError


def test_a_crash_while_writing_leaves_no_output(tmp_path, monkeypatch):
    dataset = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5]]})

    def crash(self, path, **options):  # the shards are written, then the process is interrupted
        original(self, path, **options)
        raise KeyboardInterrupt

    original = Dataset.save_to_disk
    monkeypatch.setattr(Dataset, "save_to_disk", crash)
    with pytest.raises(KeyboardInterrupt):
        write_prepared(dataset, tmp_path / "out", {"kind": "pretrain"}, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_load_checks_manifest_and_kind(tmp_path):
    dataset = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5]]})
    write_prepared(dataset, tmp_path / "out", {"kind": "pretrain"}, overwrite=False)
    assert load_prepared(tmp_path / "out", "pretrain")["input_ids"] == [[1, 2, 3], [4, 5]]
    with pytest.raises(DiffutronError, match="holds 'pretrain' data, but 'sft' data is needed"):
        load_prepared(tmp_path / "out", "sft")
    dataset.save_to_disk(str(tmp_path / "bare"))
    with pytest.raises(DiffutronError, match="not a prepared dataset .no manifest.json.; build one with"):
        load_prepared(tmp_path / "bare")
    assert length_statistics(dataset) == {"rows": 2, "tokens": 5, "mean": 2.5, "min": 2, "p50": 3, "p95": 3, "max": 3}


def test_pack_keeps_order_and_drops_the_tail():
    counts = PackingCounts()
    assert list(pack([[1, 2, 3], [4], [5, 6, 7, 8, 9]], 4, counts)) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert (counts.chunks, counts.dropped_tail_tokens) == (2, 1)
    long = PackingCounts()
    assert list(pack([list(range(10))], 3, long)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert long.dropped_tail_tokens == 1

"""Hub sources: an unreachable dataset fails naming it and how to pre-download; the stream path works."""

from __future__ import annotations

import json

import datasets
import huggingface_hub
import pytest

from diffutron.data.sources import Source, open_source
from diffutron.errors import DiffutronError


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")


@pytest.mark.parametrize("streaming", [False, True])
def test_unreachable_dataset_names_it_and_how_to_get_it(offline, streaming):
    source = Source(name="havadis", dataset="turkish-nlp-suite/Havadis", streaming=streaming)
    with pytest.raises(DiffutronError) as caught:
        open_source(source, ["text"])
    message = str(caught.value)
    assert "'turkish-nlp-suite/Havadis'" in message
    assert "huggingface-cli download --repo-type dataset turkish-nlp-suite/Havadis" in message
    assert "HF_HUB_OFFLINE=1" in message and "HF_DATASETS_OFFLINE=1" in message


@pytest.mark.parametrize("streaming", [False, True])
def test_a_dataset_the_loader_can_reach_is_read_in_order(tmp_path, offline, streaming):
    # a local dataset directory goes through the same `datasets.load_dataset` path as a hub id
    folder = tmp_path / "corpus"
    folder.mkdir()
    rows = [{"text": f"belge {index}", "id": index} for index in range(5)]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    stream = open_source(Source(name="local", dataset=str(folder), streaming=streaming, limit=4), ["text"])
    assert [record["text"] for _, record in stream.records] == [f"belge {index}" for index in range(4)]
    assert stream.total == 4
    with pytest.raises(DiffutronError, match=r"no column 'body'; columns found: 'text', 'id'"):
        list(open_source(Source(name="local", dataset=str(folder), streaming=streaming), ["body"]).records)

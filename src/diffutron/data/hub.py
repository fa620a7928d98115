"""Hugging Face hub datasets as streams of records, with errors that say how to get them offline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from diffutron.data.readers import Record
from diffutron.errors import DiffutronError


def offline_hint(dataset_id: str) -> str:
    return (
        f"download it first where there is internet: `huggingface-cli download --repo-type dataset "
        f"{dataset_id}` (or load it once with `datasets`), copy the cache (HF_HOME) here and set "
        "HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1; or export it to a local .jsonl/.parquet file "
        "and give that `path` in the recipe instead"
    )


def load_hub_dataset(dataset_id: str, config: str | None, split: str, *, streaming: bool) -> Any:
    """`datasets.load_dataset(...)` (a Dataset or IterableDataset); failure names the dataset."""
    import datasets

    described = _describe(dataset_id, config, split)
    try:
        return datasets.load_dataset(dataset_id, config, split=split, streaming=streaming)
    except (ConnectionError, TimeoutError) as error:
        raise DiffutronError(f"cannot reach the dataset {described} ({error}); {offline_hint(dataset_id)}") from None
    except (OSError, ValueError) as error:  # not found / not cached offline, bad config or split name
        raise DiffutronError(
            f"cannot load the dataset {described}: {error}. Check the id, config and split; "
            f"if this machine is offline, {offline_hint(dataset_id)}"
        ) from None


@dataclass
class HubStream:
    """What a source reader needs from a hub dataset: its columns, its length and its rows."""

    columns: list[str] | None  # None when a stream does not declare them
    total: int | None  # None for a stream
    records: Iterator[tuple[str, Record]]


def open_hub_dataset(dataset_id: str, config: str | None, split: str, *, streaming: bool) -> HubStream:
    dataset = load_hub_dataset(dataset_id, config, split, streaming=streaming)
    columns = list(dataset.column_names) if dataset.column_names is not None else None
    total = None if streaming else len(dataset)
    return HubStream(columns, total, _records(dataset, _describe(dataset_id, config, split), dataset_id))


def _records(dataset: Any, described: str, dataset_id: str) -> Iterator[tuple[str, Record]]:
    iterator = iter(dataset)
    index = 0
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except (ConnectionError, TimeoutError, OSError) as error:
            raise DiffutronError(
                f"reading the dataset {described} failed at row {index} ({error}); {offline_hint(dataset_id)}"
            ) from None
        yield f"{described} row {index}", record
        index += 1


def _describe(dataset_id: str, config: str | None, split: str) -> str:
    return f"{dataset_id!r}" + (f" (config {config!r}, split {split!r})" if config else f" (split {split!r})")

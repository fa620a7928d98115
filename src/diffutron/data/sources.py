"""A corpus source -- a hub dataset or a local file -- opened as one stream of records."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from diffutron.data.hub import open_hub_dataset
from diffutron.data.readers import Record, TxtSplit, check_first, iter_local_records, require_columns
from diffutron.errors import DiffutronError


@dataclass
class Source:
    """Where records come from: `dataset` (a hub id, with config/split) or `path` (a local file)."""

    name: str
    dataset: str | None = None
    path: Path | None = None
    config: str | None = None
    split: str = "train"
    streaming: bool = False  # hub only: read rows while downloading instead of preparing the whole set
    limit: int | None = None  # read at most this many records (None: all)
    txt_split: TxtSplit = "paragraph"  # .txt only: one document per paragraph or per line

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.path is None):
            raise DiffutronError(
                f"source {self.name!r}: give exactly one of `dataset` (a hub id) or `path` (a local file)"
            )
        if self.path is not None and (self.config is not None or self.streaming):
            raise DiffutronError(
                f"source {self.name!r}: `config` and `streaming` apply to hub datasets, not to a local `path`"
            )
        if self.limit is not None and self.limit < 1:
            raise DiffutronError(f"source {self.name!r}: limit must be >= 1 or null, got {self.limit}")

    @property
    def origin(self) -> str:
        return (
            str(self.path)
            if self.path is not None
            else f"{self.dataset}" + (f" ({self.config})" if self.config else "")
        )


@dataclass
class RecordStream:
    total: int | None  # rows that will be read, when known (for progress bars)
    records: Iterator[tuple[str, Record]]


def open_source(source: Source, needed: Sequence[str] = ()) -> RecordStream:
    """Open `source` and read its first record, so that a missing file, dataset or column fails now.

    `needed` columns are checked against the schema when there is one, else against the first row.
    """
    if source.path is not None:
        stream = RecordStream(None, iter_local_records(source.path, txt_split=source.txt_split, columns=needed))
    else:
        assert source.dataset is not None
        hub = open_hub_dataset(source.dataset, source.config, source.split, streaming=source.streaming)
        where = f"source {source.name!r} ({source.origin})"
        if hub.columns is not None:
            require_columns(hub.columns, needed, where)
        stream = RecordStream(hub.total, check_first(hub.records, needed))
    if source.limit is not None:
        stream.records = itertools.islice(stream.records, source.limit)
        stream.total = source.limit if stream.total is None else min(stream.total, source.limit)
    first = next(stream.records, None)
    if first is not None:
        stream.records = itertools.chain([first], stream.records)
    return stream

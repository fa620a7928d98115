"""Clean, tokenize and length-filter documents, counting what happens to each one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, TypeVar

from diffutron.model.tokens import encode

T = TypeVar("T")


class Counts:
    """What happened to the items of one source, for the manifest and the summary table."""

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class DocumentCounts(Counts):
    """Per source: documents read, dropped as empty, dropped as too long, kept; tokens kept."""

    read: int = 0
    empty: int = 0
    too_long: int = 0
    kept: int = 0
    tokens: int = 0


def strip_text(text: str) -> str:
    """Surrounding whitespace removed; the tokenizer's own normalizer does the rest."""
    return text.strip()


def encode_documents(
    texts: Iterable[str],
    tokenizer: Any,
    counts: DocumentCounts,
    *,
    eos_id: int | None,
    max_tokens: int | None,
    batch_size: int = 1000,
) -> Iterator[list[int]]:
    """Token ids of each non-empty document, EOS appended when `eos_id` is given.

    Documents with more than `max_tokens` ids (EOS included: the row must fit as it is stored)
    are dropped whole, never cut. `counts` is updated as documents stream through.
    """
    for batch in batched(texts, batch_size):
        counts.read += len(batch)
        cleaned = [text for text in map(strip_text, batch) if text]
        counts.empty += len(batch) - len(cleaned)
        for ids in encode(tokenizer, cleaned):
            if eos_id is not None:
                ids.append(eos_id)
            if max_tokens is not None and len(ids) > max_tokens:
                counts.too_long += 1
                continue
            counts.kept += 1
            counts.tokens += len(ids)
            yield ids


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` items (the last one shorter), for batched tokenizer calls."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch

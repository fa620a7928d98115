"""Packing as in the public dllm code: concatenate documents (each ending in EOS) and cut fixed chunks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass
class PackingCounts:
    chunks: int = 0
    dropped_tail_tokens: int = 0  # the last, incomplete chunk is dropped (as dllm's group_texts does)


def pack(documents: Iterable[list[int]], length: int, counts: PackingCounts) -> Iterator[list[int]]:
    """Chunks of exactly `length` ids from the concatenation of `documents`, in order."""
    if length < 1:
        raise ValueError(f"chunk length must be >= 1, got {length}")
    buffer: list[int] = []
    for document in documents:
        buffer.extend(document)
        start = 0
        while len(buffer) - start >= length:
            yield buffer[start : start + length]
            counts.chunks += 1
            start += length
        del buffer[:start]
    counts.dropped_tail_tokens = len(buffer)

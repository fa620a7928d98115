"""The model's tokenizer for corpus building, loaded without running checkpoint code."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from diffutron.errors import DiffutronError

T = TypeVar("T")


def load_tokenizer(name_or_path: str) -> Any:
    """A fast tokenizer from a local directory or hub id; failure says how to get it offline."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
    except (OSError, ValueError) as error:
        if Path(name_or_path).is_dir():
            raise DiffutronError(f"could not load a tokenizer from {name_or_path}: {error}") from None
        raise DiffutronError(
            f"could not load the tokenizer {name_or_path!r} ({error}). If this machine is offline, "
            f"download it first (`huggingface-cli download {name_or_path}`), copy the cache (HF_HOME) "
            "here and set HF_HUB_OFFLINE=1, or give a local directory."
        ) from None


def tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the token -> id mapping: equal for the same tokenizer wherever it is loaded from.

    Recorded in a prepared dataset's manifest so that training with a tokenizer whose ids mean other
    tokens is refused (names cannot tell: one tokenizer has many paths, two can share a name).
    """
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return "sha256:" + hashlib.sha256(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8")).hexdigest()


def encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text without special tokens (no CLS/BOS/SEP), one fast batched call.

    Not verbose: texts longer than the model's context are expected here (the callers cut or drop
    them), so the tokenizer's "will result in indexing errors" warning would only mislead.
    """
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch

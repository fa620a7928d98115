"""A unigram baseline for MLM perplexity: what knowing token frequencies alone achieves.

The baseline predicts every masked token from the training corpus' token frequencies
(add-one smoothed over the vocabulary), ignoring the context. It is scored on exactly the
positions `mlm_perplexity` masks (same tokenizer, documents, probability, length and seed), so
the two perplexities compare like for like: a model that uses its context must beat it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.eval.perplexity import masked_sequences
from diffutron.model.tokens import encode


@dataclass(frozen=True)
class UnigramResult:
    perplexity: float
    cross_entropy: float  # mean over the masked positions, nats
    tokens: int  # masked positions scored
    training_tokens: int  # tokens counted in the training texts
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_log_probabilities(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> tuple[np.ndarray, int]:
    """log p(token) from add-one smoothed counts of the tokens of `texts` (no special tokens)."""
    counts = np.ones(len(tokenizer), dtype=np.float64)
    total = 0
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == 1000:
            total += _count(tokenizer, batch, counts)
            batch = []
    total += _count(tokenizer, batch, counts)
    if total == 0:
        raise DiffutronError("the training texts hold no tokens to count")
    return np.log(counts / counts.sum()), total


def _count(tokenizer: PreTrainedTokenizerBase, texts: list[str], counts: np.ndarray) -> int:
    ids = np.fromiter((index for row in encode(tokenizer, texts) for index in row), dtype=np.int64)
    np.add.at(counts, ids, 1)
    return len(ids)


def unigram_perplexity(
    tokenizer: PreTrainedTokenizerBase,
    training_texts: Iterable[str],
    documents: Sequence[str],
    *,
    mlm_probability: float = 0.15,
    max_length: int = 512,
    seed: int = 0,
) -> UnigramResult:
    """Perplexity of the unigram model at the positions `mlm_perplexity` would mask."""
    if not documents:
        raise DiffutronError("no documents to evaluate on")
    log_probabilities, training_tokens = token_log_probabilities(tokenizer, training_texts)
    sequences = masked_sequences(tokenizer, documents, mlm_probability, max_length, seed, "mask")
    targets = np.array([s.original[p] for s in sequences for p in s.masked], dtype=np.int64)
    if targets.size == 0:
        raise DiffutronError(f"nothing was masked: the text is too short for mlm_probability {mlm_probability}")
    cross_entropy = float(-log_probabilities[targets].mean())
    return UnigramResult(
        perplexity=math.exp(cross_entropy),
        cross_entropy=cross_entropy,
        tokens=int(targets.size),
        training_tokens=training_tokens,
        settings={"mlm_probability": mlm_probability, "max_length": max_length, "seed": seed, "smoothing": "add-one"},
    )

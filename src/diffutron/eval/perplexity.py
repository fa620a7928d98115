"""The paper's intrinsic metric (docs/reference-behaviour.md, section 6): MLM perplexity of 15%-masked text.

exp of the mean cross-entropy over the masked positions. Documents are tokenized without
special tokens, cut into pieces that fit `max_length` with the tokenizer's own special
tokens around them (as the model saw text in pre-training); special tokens are never
masked. Masks are drawn sequence by sequence from one seeded generator before batching, so
a seed fixes the result whatever the batch size. The confidence interval resamples
documents (the independent unit) with replacement.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.eval.scoring import cross_entropy_at, pad_right
from diffutron.model.parts import MaskedLMParts
from diffutron.model.tokens import SpecialIds, encode, encode_text

Corruption = Literal["mask", "bert"]
CORRUPTIONS = ("mask", "bert")


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    cross_entropy: float  # mean over the masked positions, nats
    tokens: int  # masked positions scored
    documents: int
    sequences: int
    interval: tuple[float, float]  # bootstrap percentile interval of the perplexity
    confidence: float
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Sequence:
    document: int
    original: list[int]
    corrupted: list[int]
    masked: list[int]  # positions scored


def special_affixes(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text (e.g. CLS, SEP)."""
    plain = encode_text(tokenizer, "a")
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def mlm_perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    documents: Sequence[str],
    *,
    mlm_probability: float = 0.15,
    max_length: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    corruption: Corruption = "mask",
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    progress: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """Perplexity over `documents`; `progress(done, total)` is called after each batch.

    `corruption="mask"` replaces every selected position by the mask token (the paper's
    15%-masked text); `"bert"` reproduces transformers' DataCollatorForLanguageModeling
    (80% mask, 10% random token, 10% unchanged), for comparisons with Trainer-based numbers.
    `max_length` (special tokens included) defaults to the model's context (the paper: 512).
    """
    max_length = _max_length(model, max_length)
    _check_settings(mlm_probability, max_length, batch_size, corruption, bootstrap_samples, confidence)
    if not documents:
        raise DiffutronError("no documents to evaluate on")
    sequences = masked_sequences(tokenizer, documents, mlm_probability, max_length, seed, corruption)
    parts = MaskedLMParts(model)
    device = next(model.parameters()).device
    pad = SpecialIds.from_tokenizer(tokenizer).pad
    loss = np.zeros(len(documents))
    count = np.zeros(len(documents), dtype=np.int64)
    scored = [sequence for sequence in sequences if sequence.masked]
    for start in range(0, len(scored), batch_size):
        batch = scored[start : start + batch_size]
        input_ids, attention_mask = pad_right([s.corrupted for s in batch], pad, device)
        rows = [r for r, s in enumerate(batch) for _ in s.masked]
        positions = [p for s in batch for p in s.masked]
        targets = [s.original[p] for s in batch for p in s.masked]
        losses, _ = cross_entropy_at(parts, input_ids, attention_mask, rows, positions, targets)
        owners = np.array([batch[r].document for r in rows])
        np.add.at(loss, owners, losses.double().cpu().numpy())
        np.add.at(count, owners, 1)
        if progress is not None:
            progress(min(start + batch_size, len(scored)), len(scored))
    tokens = int(count.sum())
    if tokens == 0:
        raise DiffutronError(
            "nothing was masked: the text is too short for mlm_probability "
            f"{mlm_probability}; give more text or a higher --mlm-probability"
        )
    cross_entropy = float(loss.sum() / tokens)
    return PerplexityResult(
        perplexity=math.exp(cross_entropy),
        cross_entropy=cross_entropy,
        tokens=tokens,
        documents=int((count > 0).sum()),
        sequences=len(scored),
        interval=_bootstrap(loss[count > 0], count[count > 0], bootstrap_samples, confidence, seed),
        confidence=confidence,
        settings={
            "mlm_probability": mlm_probability,
            "max_length": max_length,
            "seed": seed,
            "corruption": corruption,
            "bootstrap_samples": bootstrap_samples,
        },
    )


def masked_sequences(
    tokenizer: PreTrainedTokenizerBase,
    documents: Sequence[str],
    probability: float,
    max_length: int,
    seed: int,
    corruption: Corruption,
) -> list[_Sequence]:
    prefix, suffix = special_affixes(tokenizer)
    body = max_length - len(prefix) - len(suffix)
    if body < 1:
        raise DiffutronError(f"max_length {max_length} leaves no room between the special tokens")
    mask_id = SpecialIds.from_tokenizer(tokenizer).mask
    generator = torch.Generator().manual_seed(seed)  # which positions: the same for every corruption
    replacing = torch.Generator().manual_seed(seed + 1)  # what goes there (bert corruption)
    sequences = []
    for document, ids in enumerate(encode(tokenizer, list(documents))):  # long documents: chunked below
        for start in range(0, len(ids), body):
            chunk = ids[start : start + body]
            original = prefix + chunk + suffix
            chosen = (torch.rand(len(chunk), generator=generator) < probability).nonzero().flatten()
            masked = (chosen + len(prefix)).tolist()
            corrupted = list(original)
            replacement = [mask_id] * len(masked)
            if corruption == "bert" and masked:
                kind = torch.rand(len(masked), generator=replacing)
                random_tokens = torch.randint(len(tokenizer), (len(masked),), generator=replacing)
                replacement = [
                    mask_id if k < 0.8 else int(token) if k < 0.9 else original[position]
                    for k, token, position in zip(kind.tolist(), random_tokens, masked)
                ]
            for position, token in zip(masked, replacement):
                corrupted[position] = token
            sequences.append(_Sequence(document, original, corrupted, masked))
    return sequences


def _bootstrap(loss: np.ndarray, count: np.ndarray, samples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile interval of exp(sum loss / sum count) over documents drawn with replacement."""
    point = math.exp(loss.sum() / count.sum())
    if samples == 0 or len(loss) < 2:
        return point, point
    draws = np.random.default_rng(seed).integers(0, len(loss), size=(samples, len(loss)))
    values = np.exp(loss[draws].sum(axis=1) / count[draws].sum(axis=1))
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _max_length(model: PreTrainedModel, max_length: int | None) -> int:
    """`max_length`, or the model's context when None; longer than the context is refused."""
    context = getattr(model.config, "max_position_embeddings", None)
    if max_length is None:
        if context is None:
            raise DiffutronError("the model's config does not give its context length: set max_length")
        return int(context)
    if context is not None and max_length > context:
        raise DiffutronError(f"max_length {max_length} exceeds the model's context of {context}: use at most {context}")
    return max_length


def _check_settings(
    probability: float, max_length: int, batch_size: int, corruption: str, bootstrap: int, confidence: float
) -> None:
    if not 0 < probability < 1:
        raise DiffutronError(f"mlm_probability must be between 0 and 1, got {probability}")
    if max_length < 2:
        raise DiffutronError(f"max_length must be >= 2, got {max_length}")
    if batch_size < 1:
        raise DiffutronError(f"batch_size must be >= 1, got {batch_size}")
    if corruption not in CORRUPTIONS:
        raise DiffutronError(f"unknown corruption {corruption!r}; choose one of: {', '.join(CORRUPTIONS)}")
    if bootstrap < 0:
        raise DiffutronError(f"bootstrap_samples must be >= 0, got {bootstrap}")
    if not 0 < confidence < 1:
        raise DiffutronError(f"confidence must be between 0 and 1, got {confidence}")

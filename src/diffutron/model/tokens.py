"""Token ids: special ids read from the tokenizer (never hard-coded), and plain encoding."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from diffutron.errors import DiffutronError


@dataclass(frozen=True)
class SpecialIds:
    mask: int
    eos: int
    pad: int

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> SpecialIds:
        if tokenizer.mask_token_id is None:
            raise DiffutronError(
                "the tokenizer has no mask token; a masked diffusion model needs one "
                "(set `mask_token` in tokenizer_config.json / special_tokens_map.json)"
            )
        eos = tokenizer.eos_token_id
        if eos is None:
            eos = tokenizer.sep_token_id
        if eos is None:
            raise DiffutronError(
                "the tokenizer has neither an eos nor a sep token; the sampler pads the canvas "
                "with it and stops at it (set `eos_token` in tokenizer_config.json)"
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        return cls(mask=tokenizer.mask_token_id, eos=eos, pad=pad)

    @property
    def stops(self) -> tuple[int, ...]:
        """Token ids that end an answer."""
        return (self.eos, self.pad)


IGNORE_INDEX = -100  # label of a position the loss skips (the prompt of an SFT example)


def check_unicode(text: str, field: str) -> str:
    """`text` itself if it is valid Unicode; otherwise an error naming `field` and the bad character.

    The one check of text from outside: Python keeps bytes that are not UTF-8 (in argv, on stdin)
    and JSON's unpaired `\\ud800` escapes as lone surrogates, which the tokenizer refuses with an
    internal TypeError and which no file or response can hold.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DiffutronError(
            f"{field} is not valid Unicode: character {error.start + 1} is a lone surrogate "
            f"{ascii(text[error.start])[1:-1]} (bytes that are not UTF-8, or half of a \\u escape pair); "
            "give UTF-8 text"
        ) from None
    return text


def encode(tokenizer: Any, texts: Sequence[str], field: str = "text") -> list[list[int]]:
    """Token ids of each text without special tokens (no CLS/BOS/SEP), in one fast batched call.

    The chat format and the likelihood are defined on plain ids, and a tokenizer that wraps text in
    CLS/SEP (mmBERT's does) would otherwise add tokens the model never saw there. Not verbose: texts
    longer than the model's context are expected here (the callers cut, drop or refuse them with a
    message of their own), so the tokenizer's "indexing errors" warning would only mislead. Every
    text is checked first (`check_unicode`, naming `field`, with its index when there are several).
    """
    if not texts:
        return []
    for index, text in enumerate(texts):
        check_unicode(text, field if len(texts) == 1 else f"{field} {index}")
    return tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]


def encode_text(tokenizer: Any, text: str, field: str = "text") -> list[int]:
    """One text's ids without special tokens (see `encode`); the empty text has none."""
    return encode(tokenizer, [text], field)[0] if text else []


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the token -> id mapping: equal for the same tokenizer wherever it is loaded from.

    Recorded in a prepared dataset's manifest so that training with a tokenizer whose ids mean other
    tokens is refused (names cannot tell: one tokenizer has many paths, two can share a name).
    """
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return "sha256:" + hashlib.sha256(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8")).hexdigest()


def tokenizer_name(tokenizer: Any) -> str:
    """Where the tokenizer came from, as recorded in data manifests."""
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def cut_to_fit(ids: Sequence[int], room: int) -> tuple[list[int], bool]:
    """`ids` cut from the left to at most `room` tokens, and whether anything was cut.

    The left: in a prompt or a context the end (the question, the text right before the
    continuation) matters most.
    """
    if len(ids) <= room:
        return list(ids), False
    return list(ids[len(ids) - room :]) if room > 0 else [], True

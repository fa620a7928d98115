"""The token sets a slot's positions are restricted to, read once per tokenizer from each token's text.

A token belongs to a set by its decoded text alone: a string slot takes tokens whose text cannot
end or break a JSON string (no quote, backslash or control character, no partial UTF-8), a number
slot digits, a sign or a point. Padding is the tokenizer's EOS and pad tokens.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable

import torch
from transformers import PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.model.tokens import SpecialIds

JSON_SPACE = frozenset(" \n\t\r")


class TokenSet(enum.IntEnum):
    """The sets, by their row in `token_sets`."""

    STRING = 0
    STRING_OR_PAD = 1
    SIGN_OR_DIGIT = 2
    DIGIT = 3
    DIGIT_OR_PAD = 4
    NUMBER_OR_PAD = 5  # digit or point
    COMMA_OR_PAD = 6  # an optional array item's separator: the item is there, or not
    SPACE_OR_PAD = 7  # an optional first array item's opening


def _string_safe(text: str) -> bool:
    return bool(text) and "\ufffd" not in text and not any(char in '"\\' or ord(char) < 0x20 for char in text)


MEMBERS: dict[TokenSet, tuple[Callable[[str], bool], bool]] = {  # (text test, padding allowed)
    TokenSet.STRING: (_string_safe, False),
    TokenSet.STRING_OR_PAD: (_string_safe, True),
    TokenSet.SIGN_OR_DIGIT: (lambda text: text == "-" or (text.isascii() and text.isdigit()), False),
    TokenSet.DIGIT: (lambda text: text.isascii() and text.isdigit(), False),
    TokenSet.DIGIT_OR_PAD: (lambda text: text.isascii() and text.isdigit(), True),
    TokenSet.NUMBER_OR_PAD: (lambda text: text == "." or (text.isascii() and text.isdigit()), True),
    TokenSet.COMMA_OR_PAD: (lambda text: text == ",", True),
    TokenSet.SPACE_OR_PAD: (lambda text: bool(text) and set(text) <= JSON_SPACE, True),
}


@functools.lru_cache(maxsize=8)
def token_sets(tokenizer: PreTrainedTokenizerBase, vocabulary: int) -> torch.Tensor:
    """(sets, vocabulary) bool, rows in `TokenSet` order; `vocabulary` is the model's output width."""
    ids = SpecialIds.from_tokenizer(tokenizer)
    special = set(tokenizer.all_special_ids)
    count = min(len(tokenizer), vocabulary)
    texts = tokenizer.batch_decode([[token] for token in range(count)])
    sets = torch.zeros((len(TokenSet), vocabulary), dtype=torch.bool)
    for token_set, (test, padding) in MEMBERS.items():
        members = [token for token, text in enumerate(texts) if token not in special and test(text)]
        if not members:
            raise DiffutronError(
                f"the tokenizer has no token for the {token_set.name.lower()} slots of structured output"
            )
        sets[token_set, members] = True
        if padding:
            sets[token_set, list(ids.stops)] = True
    return sets


def is_padding(token: int, ids: SpecialIds) -> bool:
    return token in ids.stops

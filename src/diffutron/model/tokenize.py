"""Text to token ids and back, as vLLM's `/tokenize` and `/detokenize` answer (a route only wraps these)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.model.chat import Message, render_chat
from diffutron.model.tokens import encode_text


@dataclass(frozen=True)
class Tokenized:
    """Token ids of a prompt, the model's context and (if asked for) each token's string."""

    tokens: list[int]
    max_model_len: int
    token_strs: list[str] | None = None

    @property
    def count(self) -> int:
        return len(self.tokens)

    def to_dict(self) -> dict[str, Any]:
        """vLLM's `/tokenize` response body."""
        body: dict[str, Any] = {"count": self.count, "max_model_len": self.max_model_len, "tokens": self.tokens}
        if self.token_strs is not None:
            body["token_strs"] = self.token_strs
        return body


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[Message],
    max_model_len: int,
    *,
    chat: bool = False,
    add_special_tokens: bool = False,
    token_strs: bool = False,
) -> Tokenized:
    """The ids of `prompt`: a text as it is, or (`chat`, or a list of messages) rendered in the chat
    format with the answer prompt, as `chat()` feeds it. Without `add_special_tokens` these are the ids
    generation feeds the model; with it, the tokenizer's own CLS/SEP (or BOS/EOS) are added."""
    if not isinstance(prompt, str) or chat:
        prompt = render_chat(prompt)
    if add_special_tokens:
        ids = tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"]
    else:
        ids = encode_text(tokenizer, prompt)
    strings = tokenizer.convert_ids_to_tokens(ids) if token_strs else None
    return Tokenized(list(ids), max_model_len, strings)


def detokenize(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[int]) -> str:
    """The text of `tokens` (special tokens kept, so that ids come back as they went in)."""
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise DiffutronError(f"tokens must be a list of token ids, got {type(tokens).__name__}")
    vocabulary = len(tokenizer)
    for index, token in enumerate(tokens):
        if not (isinstance(token, int) and not isinstance(token, bool) and 0 <= token < vocabulary):
            raise DiffutronError(f"tokens[{index}] must be a token id from 0 to {vocabulary - 1}, got {token!r}")
    return tokenizer.decode(list(tokens), skip_special_tokens=False)

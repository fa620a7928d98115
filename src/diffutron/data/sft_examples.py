"""Conversations -> SFT rows: `input_ids` and `labels`, the prompt labelled -100 (docs/reference-behaviour.md, section 4).

The prompt is everything up to and including the final `[Answer]\\n`; the answer is the rest of the
rendered conversation (`{assistant}\\n[/Answer]\\n\\n`). The two texts are tokenized SEPARATELY
and the id lists concatenated. That makes the boundary exact by construction, and it is what the
model meets at inference: there the prompt is tokenized on its own (ending in `[Answer]\\n`) and the
answer is produced as the ids after it. (Tokenizing the joined text could merge tokens across the
boundary and put a label on a token that starts inside the prompt.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from diffutron.data.documents import Counts, batched
from diffutron.model.tokens import IGNORE_INDEX, encode
from diffutron.model.chat import Message, render_chat



@dataclass
class SFTCounts(Counts):
    """Per source: rows read, dropped (empty / prompt too long), cut at max_length, kept; tokens."""

    read: int = 0
    empty: int = 0
    prompt_too_long: int = 0
    truncated: int = 0
    kept: int = 0
    tokens: int = 0
    answer_tokens: int = 0


def split_conversation(messages: Sequence[Message]) -> tuple[str, str]:
    """(prompt text, answer text) of a conversation that ends with the assistant's answer."""
    prompt = render_chat(list(messages[:-1]))
    full = render_chat(list(messages))
    if not full.startswith(prompt):  # render_chat appends turns, so this holds; guard the contract
        raise AssertionError("the rendered conversation does not start with its prompt")
    return prompt, full[len(prompt) :]


def build_row(prompt_ids: list[int], answer_ids: list[int], max_length: int) -> dict[str, list[int]] | None:
    """The training row, cut at `max_length`; None when the prompt leaves no room for one answer token."""
    if len(prompt_ids) >= max_length:
        return None
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def encode_conversations(
    pairs: Iterable[tuple[str, str]], tokenizer: Any, counts: SFTCounts, *, max_length: int, batch_size: int = 1000
) -> Iterator[dict[str, list[int]]]:
    """Rows for (prompt, answer) text pairs, tokenized in batches; `counts` updated as they stream."""
    for batch in batched(pairs, batch_size):
        prompts = encode(tokenizer, [prompt for prompt, _ in batch])
        answers = encode(tokenizer, [answer for _, answer in batch])
        for prompt_ids, answer_ids in zip(prompts, answers, strict=True):
            row = build_row(prompt_ids, answer_ids, max_length)
            if row is None:
                counts.prompt_too_long += 1
                continue
            if len(prompt_ids) + len(answer_ids) > max_length:
                counts.truncated += 1
            counts.kept += 1
            counts.tokens += len(row["input_ids"])
            counts.answer_tokens += len(row["input_ids"]) - len(prompt_ids)
            yield row

"""A schema's skeleton on the canvas: fixed tokens for the JSON around the values, mask slots for them.

Fixed text is encoded run by run, apart from the slots, so its tokens never depend on what fills
a slot. Choices (booleans, enum, const, optional properties) are settled while the skeleton is
laid out, left to right: `plan` is a generator that yields a `ChoiceRequest` (the canvas so far
and the options' ids) and receives the index of the option taken. It returns a reader, which turns
the filled canvas row back into the JSON value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from diffutron.model.tokens import SpecialIds, encode_text
from diffutron.sampling.structured.schema import Array, Choice, FreeObject, Node, Numeral, Object, Text, ToolCall
from diffutron.sampling.structured.tokens import TokenSet


def dumps(value: Any) -> str:
    """JSON text as the skeleton writes it (and answers are returned): `, ` and `: ` separators."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class ChoiceRequest:
    """Which of `options` (token ids) continues `context` (the row's canvas so far) most likely."""

    context: tuple[int, ...]
    options: tuple[tuple[int, ...], ...]


class Skeleton:
    """A row's canvas as it is laid out: ids (masks at slots) and each position's token set (-1: fixed)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.mask = SpecialIds.from_tokenizer(tokenizer).mask
        self.ids = list(prompt)
        self.sets = [-1] * len(prompt)
        self.prompt_length = len(prompt)
        self._pending = ""

    def text(self, text: str) -> None:
        self._pending += text

    def flush(self) -> None:
        """Encode the fixed text written since the last slot, on its own."""
        self.fixed(encode_text(self.tokenizer, self._pending))
        self._pending = ""

    def fixed(self, ids: Sequence[int]) -> None:
        self.ids += ids
        self.sets += [-1] * len(ids)

    def slot(self, sets: Sequence[TokenSet]) -> int:
        """Masks restricted to `sets`, one per position; returns where they start."""
        self.flush()
        start = len(self.ids)
        self.ids += [self.mask] * len(sets)
        self.sets += [int(token_set) for token_set in sets]
        return start

    def encoded(self, text: str) -> tuple[int, ...]:
        return tuple(encode_text(self.tokenizer, text))


class Reading:
    """A filled canvas row, read back into values."""

    def __init__(self, row: Sequence[int], tokenizer: PreTrainedTokenizerBase) -> None:
        self.row = row
        self.tokenizer = tokenizer
        self.stops = SpecialIds.from_tokenizer(tokenizer).stops

    def until_padding(self, start: int, width: int) -> list[int]:
        """A slot's tokens up to its first padding token: what comes after it is dropped."""
        tokens = list(self.row[start : start + width])
        ends = [index for index, token in enumerate(tokens) if token in self.stops]
        return tokens[: ends[0]] if ends else tokens

    def text(self, start: int, width: int) -> str:
        return self.tokenizer.decode(self.until_padding(start, width))

    def present(self, marker: int) -> bool:
        return self.row[marker] not in self.stops


Reader = Any  # a callable Reading -> JSON value
Plan = Generator[ChoiceRequest, int, Reader]


def plan(node: Node, skeleton: Skeleton) -> Plan:
    """Lay `node` out on `skeleton`, asking for its choices; returns its reader."""
    if isinstance(node, Choice):
        return (yield from _choice(node.options, skeleton))
    if isinstance(node, Text):
        return _text(node, skeleton)
    if isinstance(node, Numeral):
        return _numeral(node, skeleton)
    if isinstance(node, Object):
        return (yield from _object(node, skeleton))
    if isinstance(node, Array):
        return (yield from _array(node, skeleton))
    if isinstance(node, ToolCall):
        return (yield from _tool_call(node, skeleton))
    return _free_object(node, skeleton)


def _choice(options: Sequence[Any], skeleton: Skeleton) -> Plan:
    if len(options) == 1:
        skeleton.text(dumps(options[0]))
        return lambda reading: options[0]
    skeleton.flush()
    encoded = tuple(skeleton.encoded(dumps(option)) for option in options)
    index = yield ChoiceRequest(tuple(skeleton.ids), encoded)
    skeleton.fixed(encoded[index])
    return lambda reading: options[index]


def tool_call_opening(name: str) -> str:
    """A tool call's text up to its arguments (the shape `model.chat.tool_call_text` writes)."""
    return f'{{"name": {dumps(name)}, "arguments": '


def _tool_call(node: ToolCall, skeleton: Skeleton) -> Plan:
    """The function's opening (among several, chosen like an enum's option), its arguments, the close."""
    index = 0
    if len(node.functions) > 1:
        skeleton.flush()
        encoded = tuple(skeleton.encoded(tool_call_opening(name)) for name, _ in node.functions)
        index = yield ChoiceRequest(tuple(skeleton.ids), encoded)
        skeleton.fixed(encoded[index])
    else:
        skeleton.text(tool_call_opening(node.functions[0][0]))
    name, arguments = node.functions[index]
    read = yield from plan(arguments, skeleton)
    skeleton.text("}")
    return lambda reading: {"name": name, "arguments": read(reading)}


def _text(node: Text, skeleton: Skeleton) -> Reader:
    """A string: at least `min_chars` tokens that are not padding (each token has a character), then padding allowed."""
    leading = min(node.min_chars, node.tokens)
    skeleton.text('"')
    start = skeleton.slot([TokenSet.STRING] * leading + [TokenSet.STRING_OR_PAD] * (node.tokens - leading))
    skeleton.text('"')

    def read(reading: Reading) -> str:
        value = reading.text(start, node.tokens)[: node.max_chars]
        return value + " " * (node.min_chars - len(value))  # only for a tokenizer whose decoding drops characters

    return read


def _numeral(node: Numeral, skeleton: Skeleton) -> Reader:
    """Sign or digit first (a digit only where no negative value fits), then digits (and a point) or padding."""
    signed = node.minimum is None or node.minimum < 0
    first = TokenSet.SIGN_OR_DIGIT if signed else TokenSet.DIGIT
    rest = TokenSet.DIGIT_OR_PAD if node.integer else TokenSet.NUMBER_OR_PAD
    start = skeleton.slot([first] + [rest] * (node.tokens - 1))
    return lambda reading: clamp(parse_numeral(reading.text(start, node.tokens), node.integer), node)


def parse_numeral(text: str, integer: bool) -> int | float:
    """The slot's text as a number: a leading minus, digits, and for numbers what precedes a second point.

    Text without a digit ("-", "-.") reads as 0.
    """
    negative = text.startswith("-")
    body = text.removeprefix("-")
    if not integer:
        body = ".".join(body.split(".")[:2])
    if not any(char.isdigit() for char in body):
        return 0
    value: int | float = float(body) if "." in body else int(body)
    return -value if negative else value


def clamp(value: int | float, node: Numeral) -> int | float:
    """A value out of range becomes the nearest bound (docs/structured-output.md)."""
    if node.minimum is not None and value < node.minimum:
        value = node.minimum
    if node.maximum is not None and value > node.maximum:
        value = node.maximum
    if isinstance(value, float) and node.integer:
        return math.floor(value)
    return value


def _object(node: Object, skeleton: Skeleton) -> Plan:
    """Properties in the schema's order; an optional one is there if the model finds its key more
    likely than the object's close at that point."""
    skeleton.text("{")
    members: list[tuple[str, Reader]] = []
    for member in node.members:
        opening = f"{', ' if members else ''}{dumps(member.key)}: "
        if not member.required:
            skeleton.flush()
            options = (skeleton.encoded(opening), skeleton.encoded("}"))
            if (yield ChoiceRequest(tuple(skeleton.ids), options)) != 0:
                continue
        skeleton.text(opening)
        members.append((member.key, (yield from plan(member.value, skeleton))))
    skeleton.text("}")
    return lambda reading: {key: read(reading) for key, read in members}


def _array(node: Array, skeleton: Skeleton) -> Plan:
    """Items up to `max_items`; an item past `min_items` follows a marker slot: a separator, or
    padding that ends the array there."""
    skeleton.text("[")
    required: list[Reader] = []
    optional: list[tuple[int, Reader]] = []
    for index in range(node.max_items):
        if index < node.min_items:
            skeleton.text(", " if index else "")
            required.append((yield from plan(node.item, skeleton)))
            continue
        marker = skeleton.slot([TokenSet.COMMA_OR_PAD if index else TokenSet.SPACE_OR_PAD])
        skeleton.text(" " if index else "")
        optional.append((marker, (yield from plan(node.item, skeleton))))
    skeleton.text("]")

    def read(reading: Reading) -> list[Any]:
        items = [item(reading) for item in required]
        for marker, item in optional:
            if not reading.present(marker):
                break
            items.append(item(reading))
        return items

    return read


def _free_object(node: FreeObject, skeleton: Skeleton) -> Reader:
    """Up to `max_members` string members, the first always there; a repeated key keeps its first value."""
    skeleton.text("{")
    members: list[tuple[int | None, Reader, Reader]] = []
    for index in range(node.max_members):
        marker = skeleton.slot([TokenSet.COMMA_OR_PAD]) if index else None
        skeleton.text(" " if index else "")
        key = _text(node.key, skeleton)
        skeleton.text(": ")
        members.append((marker, key, _text(node.value, skeleton)))
    skeleton.text("}")

    def read(reading: Reading) -> dict[str, str]:
        value: dict[str, str] = {}
        for marker, key, text in members:
            if marker is not None and not reading.present(marker):
                break
            value.setdefault(key(reading), text(reading))
        return value

    return read

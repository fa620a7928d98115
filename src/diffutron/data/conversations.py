"""Dataset rows -> conversations (lists of {"role", "content"}), for the instruction formats we load.

A row that has nothing to learn from (empty question or empty answer) maps to None and is counted
as dropped by the caller; a row that is malformed is an error naming where it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from diffutron.data.readers import Record, require_columns, text_value
from diffutron.model.tokens import check_unicode
from diffutron.errors import DiffutronError
from diffutron.model.chat import Message

Format = Literal["instruction", "pair", "messages", "text"]

# role -> default column; the `pair` defaults are InstrucTurca's column names (its dataset card)
DEFAULT_COLUMNS: dict[str, dict[str, str | None]] = {
    "instruction": {"instruction": "instruction", "input": "input", "output": "output"},
    "pair": {"user": "Input", "assistant": "Output"},
    "messages": {"messages": "messages"},
    "text": {"text": "text"},  # plain text replayed during SFT, no conversation: see `record_to_text`
}
OPTIONAL_ROLES = {"input"}  # may be mapped to null when the dataset has no such column


def resolve_columns(format: str, columns: Mapping[str, str | None], where: str) -> dict[str, str | None]:
    """The format's default column mapping updated with `columns`, every role checked."""
    if format not in DEFAULT_COLUMNS:
        raise DiffutronError(f"{where}: unknown format {format!r}; use one of {', '.join(DEFAULT_COLUMNS)}")
    defaults = DEFAULT_COLUMNS[format]
    unknown = sorted(set(columns) - set(defaults))
    if unknown:
        raise DiffutronError(
            f"{where}: columns has unknown role {', '.join(map(repr, unknown))} for format {format!r}; "
            f"its roles are: {', '.join(defaults)}"
        )
    resolved = {**defaults, **columns}
    for role, column in resolved.items():
        if column is None and role not in OPTIONAL_ROLES:
            raise DiffutronError(f"{where}: the {role!r} column is required for format {format!r}")
    return resolved


def needed_columns(columns: Mapping[str, str | None]) -> list[str]:
    return [column for column in columns.values() if column is not None]


def record_to_text(record: Record, columns: Mapping[str, str | None], location: str) -> str | None:
    """The plain text of a `text` row (None when empty): learned whole, to limit forgetting in SFT."""
    column = columns["text"]
    assert column is not None
    text = text_value(record, column, location).strip()
    return text or None


def record_to_messages(
    format: Format, record: Record, columns: Mapping[str, str | None], location: str
) -> list[Message] | None:
    """The conversation in one row, or None when its question or answer is empty."""
    if format == "instruction":
        return instruction_messages(record, columns, location)
    if format == "pair":
        return pair_messages(record, columns, location)
    return checked_messages(record, columns["messages"], location)


def instruction_messages(record: Record, columns: Mapping[str, str | None], location: str) -> list[Message] | None:
    """instruction/input/output (LlamaTurk): user = instruction, + "\\n\\n" + input when input is non-empty."""
    instruction = text_value(record, columns["instruction"], location).strip()
    extra = text_value(record, columns["input"], location).strip() if columns.get("input") else ""
    output = text_value(record, columns["output"], location).strip()
    user = f"{instruction}\n\n{extra}" if instruction and extra else instruction or extra
    return _turn(user, output)


def pair_messages(record: Record, columns: Mapping[str, str | None], location: str) -> list[Message] | None:
    """One question column and one answer column (InstrucTurca: Input / Output)."""
    user = text_value(record, columns["user"], location).strip()
    assistant = text_value(record, columns["assistant"], location).strip()
    return _turn(user, assistant)


def checked_messages(record: Record, column: str, location: str) -> list[Message] | None:
    """A `messages` list of {"role", "content"} ending with an assistant turn (None if that is empty)."""
    require_columns(record, [column], location)
    messages = record[column]
    if not isinstance(messages, list) or not messages:
        raise DiffutronError(f'{location}: {column!r} must be a non-empty list of {{"role", "content"}} objects')
    checked: list[Message] = []
    for index, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise DiffutronError(
                f"{location}: message {index} must be an object with text fields 'role' and 'content', got {message!r}"
            )
        content = check_unicode(message["content"], f"{location}: message {index} content")
        checked.append({"role": message["role"], "content": content})
    if checked[-1]["role"] != "assistant":
        raise DiffutronError(
            f"{location}: the last message must be the assistant's answer (the part that is learned), "
            f"got role {checked[-1]['role']!r}"
        )
    if not checked[-1]["content"].strip():
        return None
    return checked


def _turn(user: str, assistant: str) -> list[Message] | None:
    if not user or not assistant:
        return None
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]

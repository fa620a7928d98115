"""Structured output: JSON answers that always parse, and validate against the schema asked for.

The schema becomes a skeleton on the canvas (`skeleton.py`): braces, keys, quotes and commas as
fixed tokens, mask slots for the values, each restricted to the tokens that keep the JSON valid
(`tokens.py`); the sampler fills the slots in any order. See docs/structured-output.md.

`response_format` reads the OpenAI-shaped request field, so a server only hands it over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diffutron.errors import DiffutronError
from diffutron.model.chat import Message, with_system_note
from diffutron.sampling.structured.fill import structured_answers
from diffutron.sampling.structured.schema import Node, free_object, read_schema
from diffutron.sampling.structured.tools import Function, call_probability, tool_call_node, tools_instruction

__all__ = [
    "Function",
    "ResponseFormat",
    "call_probability",
    "response_format",
    "schema_format",
    "structured_answers",
    "tool_call_format",
    "with_instruction",
]

# the skeleton already shows the keys and the shape: the schema itself is not repeated in the prompt
JSON_INSTRUCTION = "Yanıtını yalnızca JSON olarak ver."


@dataclass(frozen=True)
class ResponseFormat:
    """A JSON answer's skeleton (`node`) and the schema it came from (None: any JSON object)."""

    node: Node
    schema: Mapping[str, Any] | None = None

    instruction: str = JSON_INSTRUCTION  # what the chat prompt's system turn tells the model


def schema_format(schema: object) -> ResponseFormat:
    """A JSON Schema (the subset of docs/structured-output.md) as a response format."""
    if not isinstance(schema, Mapping):
        raise DiffutronError(f"a JSON schema must be a JSON object, got {type(schema).__name__}")
    return ResponseFormat(read_schema(schema), schema)


def response_format(value: object) -> ResponseFormat | None:
    """The OpenAI-shaped `response_format`: {"type": "text"} (None: a free answer), {"type":
    "json_object"}, or {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}."""
    if value is None or isinstance(value, ResponseFormat):
        return value
    if not isinstance(value, Mapping) or "type" not in value:
        raise DiffutronError(
            'response_format must be {"type": "text"}, {"type": "json_object"} or '
            '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}'
        )
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(free_object())
    if kind != "json_schema":
        raise DiffutronError(f"unknown response_format type {kind!r}; use text, json_object or json_schema")
    body = value.get("json_schema")
    if not isinstance(body, Mapping) or "schema" not in body:
        raise DiffutronError('a json_schema response_format needs "json_schema": {"name": ..., "schema": {...}}')
    return schema_format(body["schema"])


def tool_call_format(functions: Sequence[Function], where: str = "tools") -> ResponseFormat:
    """An answer that calls one of `functions` (docs/serving.md, Tools): its skeleton, and the tools
    described in the system turn."""
    return ResponseFormat(tool_call_node(functions, where), instruction=tools_instruction(functions))


def with_instruction(messages: str | Sequence[Message], response: ResponseFormat) -> list[Message]:
    """The conversation with the format's instruction at the end of its system turn (a new one if it has none)."""
    return with_system_note(messages, response.instruction)

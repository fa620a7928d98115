"""The JSON Schema subset structured output supports, read into a tree of nodes.

Every keyword is either understood or refused with a `DiffutronError` naming it: a keyword that
were silently skipped would let an answer fail the schema the caller validates against.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from diffutron.errors import DiffutronError

STRING_TOKENS = 16  # a string without maxLength: its slot's tokens
INTEGER_TOKENS = 6  # an integer without both bounds: sign and digits
NUMBER_TOKENS = 8  # a number: sign, digits and point
ARRAY_ITEMS = 4  # an array without maxItems: its most items
KEY_TOKENS = 8  # a free-form object's keys (`{"type": "json_object"}`)
OBJECT_MEMBERS = 4  # a free-form object's most members

ANNOTATIONS = frozenset({"title", "description", "$comment", "examples", "default", "$schema", "$id"})
KEYWORDS = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems"},
    "string": {"minLength", "maxLength"},
    "integer": {"minimum", "maximum"},
    "number": {"minimum", "maximum"},
    "boolean": set(),
    "null": set(),
}
SUPPORTED = ", ".join(sorted({"type", "enum", "const"} | set().union(*KEYWORDS.values())))


@dataclass(frozen=True)
class Choice:
    """One of `options` (JSON values), chosen by the model's likelihood of each; one option is fixed text."""

    options: tuple[Any, ...]


@dataclass(frozen=True)
class Text:
    """A string slot of `tokens` tokens; the value keeps `min_chars`..`max_chars` characters."""

    tokens: int
    min_chars: int = 0
    max_chars: int | None = None


@dataclass(frozen=True)
class Numeral:
    """An integer or number slot of `tokens` tokens, clamped into [minimum, maximum]."""

    integer: bool
    tokens: int
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Member:
    key: str
    value: Node
    required: bool


@dataclass(frozen=True)
class Object:
    members: tuple[Member, ...]


@dataclass(frozen=True)
class Array:
    item: Node
    min_items: int
    max_items: int


@dataclass(frozen=True)
class FreeObject:
    """`{"type": "json_object"}`: 1..`max_members` members, keys and string values written by the model."""

    key: Text
    value: Text
    max_members: int


@dataclass(frozen=True)
class ToolCall:
    """A call of one of `functions` (name, its arguments' node), written `{"name": ..., "arguments": ...}`;
    among several functions the model's likelihood of each call's opening picks one."""

    functions: tuple[tuple[str, Node], ...]


Node = Choice | Text | Numeral | Object | Array | FreeObject | ToolCall


def free_object() -> FreeObject:
    """The skeleton of `{"type": "json_object"}` (docs/structured-output.md)."""
    return FreeObject(Text(KEY_TOKENS, min_chars=1), Text(STRING_TOKENS), OBJECT_MEMBERS)


def read_schema(schema: object, where: str = "schema") -> Node:
    """The node of `schema`; `where` names its place in the messages (schema.properties.x)."""
    if not isinstance(schema, Mapping):
        raise DiffutronError(f"{where} must be a JSON object (a schema), got {type(schema).__name__}")
    keys = set(schema) - ANNOTATIONS
    if "enum" in keys or "const" in keys:
        return _choice(schema, keys, where)
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in KEYWORDS:
        if kind is None:
            _refuse_unknown(keys, set().union(*KEYWORDS.values()), where)
            raise DiffutronError(f"{where} needs a 'type' (one of {', '.join(KEYWORDS)}), or enum / const")
        raise DiffutronError(f"{where} has type {kind!r}; structured output supports {', '.join(KEYWORDS)}")
    _refuse_unknown(keys - {"type"}, KEYWORDS[kind], where)
    if kind == "object":
        return _object(schema, where)
    if kind == "array":
        return _array(schema, where)
    if kind == "string":
        return _text(schema, where)
    if kind in ("integer", "number"):
        return _numeral(schema, kind == "integer", where)
    return Choice((False, True) if kind == "boolean" else (None,))


def _refuse_unknown(keys: set[str], allowed: set[str], where: str) -> None:
    unknown = sorted(keys - allowed)
    if unknown:
        raise DiffutronError(
            f"{where} uses the keyword {unknown[0]!r}, which structured output does not support here "
            f"(supported: {SUPPORTED}; annotations such as title and description are ignored)"
        )


def _choice(schema: Mapping[str, Any], keys: set[str], where: str) -> Choice:
    """enum / const, optionally with a type: the options of that type."""
    _refuse_unknown(keys, {"enum", "const", "type"}, where)
    if "const" in schema:
        options = [schema["const"]]
    else:
        options = schema["enum"]
        if not isinstance(options, list) or not options:
            raise DiffutronError(f"{where}.enum must be a non-empty list of values")
    kind = schema.get("type")
    if kind is not None:
        if not isinstance(kind, str) or kind not in KEYWORDS:
            raise DiffutronError(f"{where} has type {kind!r}; structured output supports {', '.join(KEYWORDS)}")
        options = [option for option in options if _json_type(option) in (kind, "integer" * (kind == "number"))]
    if "enum" in schema and "const" in schema:
        options = [option for option in options if option in schema["enum"]]
    if not options:
        raise DiffutronError(f"{where}: no value satisfies its enum / const and type together")
    for option in options:
        json.dumps(_checked_value(option, where))
    return Choice(tuple(options))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, numbers.Integral):
        return "integer"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _checked_value(value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise DiffutronError(f"{where} lists {value}, which JSON cannot write: give finite numbers")
    if isinstance(value, list):
        return [_checked_value(item, where) for item in value]
    if isinstance(value, dict):
        return {key: _checked_value(item, where) for key, item in value.items()}
    return value


def _count(schema: Mapping[str, Any], name: str, where: str, default: int | None = None) -> int | None:
    value = schema.get(name, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise DiffutronError(f"{where}.{name} must be an integer >= 0, got {value!r}")
    return value


def _object(schema: Mapping[str, Any], where: str) -> Object:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(properties, Mapping):
        raise DiffutronError(f"{where}.properties must be an object of schemas")
    if not isinstance(required, list) or any(name not in properties for name in required):
        raise DiffutronError(f"{where}.required must list names of its properties, got {required!r}")
    if not isinstance(schema.get("additionalProperties", False), bool):
        raise DiffutronError(f"{where}.additionalProperties may only be true or false here")
    members = tuple(
        Member(str(key), read_schema(value, f"{where}.properties.{key}"), key in required)
        for key, value in properties.items()
    )
    return Object(members)


def _array(schema: Mapping[str, Any], where: str) -> Array:
    if "items" not in schema:
        raise DiffutronError(f"{where} is an array without 'items': give the items' schema")
    low = _count(schema, "minItems", where, 0)
    high = _count(schema, "maxItems", where, max(low, ARRAY_ITEMS))
    if low > high:
        raise DiffutronError(f"{where} has minItems {low} > maxItems {high}")
    return Array(read_schema(schema["items"], f"{where}.items"), low, high)


def _text(schema: Mapping[str, Any], where: str) -> Text | Choice:
    low = _count(schema, "minLength", where, 0)
    high = _count(schema, "maxLength", where)
    if high is not None and low > high:
        raise DiffutronError(f"{where} has minLength {low} > maxLength {high}")
    if high == 0:
        return Choice(("",))
    return Text(max(low, STRING_TOKENS if high is None else high), low, high)


def _numeral(schema: Mapping[str, Any], integer: bool, where: str) -> Numeral | Choice:
    bounds = []
    for name in ("minimum", "maximum"):
        value = schema.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
        ):
            raise DiffutronError(f"{where}.{name} must be a finite number, got {value!r}")
        bounds.append(value)
    low, high = bounds
    if integer:
        low = None if low is None else math.ceil(low)
        high = None if high is None else math.floor(high)
    if low is not None and high is not None and low > high:
        raise DiffutronError(f"{where} has minimum {low} > maximum {high}: no value fits")
    if integer and low is not None and low == high:
        return Choice((low,))
    tokens = NUMBER_TOKENS
    if integer:
        tokens = INTEGER_TOKENS if low is None or high is None else max(len(str(low)), len(str(high)))
    return Numeral(integer, tokens, low, high)

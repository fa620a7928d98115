"""YAML recipes mapped onto typed dataclasses, so a typo in a config fails loudly instead of being ignored.

`load_dataclass(Cls, path, overrides)` reads a YAML mapping, applies `key.sub=value` overrides and builds
`Cls` field by field, checking types (dataclasses, lists, dicts, Optional, Literal, int, float, str,
bool, Path). Unknown keys are an error that lists the valid ones; NaN and infinity are refused everywhere.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from diffutron.errors import DiffutronError

T = TypeVar("T")


def load_dataclass(cls: type[T], path: str | Path, overrides: Sequence[str] = ()) -> T:
    """Build `cls` from the YAML file at `path`, with `key.sub=value` overrides applied first."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DiffutronError(f"cannot read the config {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise DiffutronError(f"the config {path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DiffutronError(f"the config {path} is not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DiffutronError(f"the config {path} must be a YAML mapping of keys to values")
    return from_mapping(cls, apply_overrides(data, overrides), where=str(path))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of `data` with each `a.b.c=value` set (the value parsed as YAML: 3, true, [1, 2], text)."""
    result = _copy(data)
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key.strip():
            raise DiffutronError(f"override {override!r} must look like key=value (nested: a.b=value)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        target = result
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            child = target.setdefault(parent, {})
            if not isinstance(child, dict):
                raise DiffutronError(f"override {override!r}: {parent!r} is not a mapping")
            target = child
        target[leaf] = value
    return result


def from_mapping(cls: type[T], data: Any, where: str = "config") -> T:
    """Build the dataclass `cls` from a mapping, checking every key and value type.

    Errors name `where` (e.g. the file) and the key path: `cpt.yaml: sources[1].split: ...`.
    """
    try:
        return _convert(cls, data, "")
    except _KeyError as error:
        raise DiffutronError(f"{where}: {error.args[0]}") from None


class _KeyError(Exception):
    """A bad value at a key path; turned into a `DiffutronError` naming the file."""


def _fail(key: str, message: str) -> typing.NoReturn:
    raise _KeyError(f"{key}: {message}" if key else message)


def _child(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def to_mapping(instance: Any) -> Any:
    """A dataclass as plain YAML/JSON-ready data (paths become strings)."""
    if dataclasses.is_dataclass(instance) and not isinstance(instance, type):
        return {field.name: to_mapping(getattr(instance, field.name)) for field in dataclasses.fields(instance)}
    if isinstance(instance, Mapping):
        return {key: to_mapping(value) for key, value in instance.items()}
    if isinstance(instance, (list, tuple)):
        return [to_mapping(value) for value in instance]
    if isinstance(instance, Path):
        return str(instance)
    return instance


def _copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _copy(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_copy(value) for value in data]
    return data


def _convert(annotation: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _build_dataclass(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except _KeyError as error:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        _fail(where, f"{value!r} fits none of {annotation}")
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            _fail(where, f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (list, Sequence, tuple) or annotation in (list, tuple):
        if not isinstance(value, list):
            _fail(where, f"expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        items = [_convert(item, element, f"{where}[{index}]") for index, element in enumerate(value)]
        return tuple(items) if origin is tuple or annotation is tuple else items
    if origin in (dict, Mapping) or annotation is dict:
        if not isinstance(value, dict):
            _fail(where, f"expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(annotation) or (Any, Any)
        return {
            _convert(key_type, key, f"{where} (a key)"): _convert(value_type, element, _child(where, key))
            for key, element in value.items()
        }
    return _convert_scalar(annotation, value, where)


def _convert_scalar(annotation: Any, value: Any, where: str) -> Any:
    if annotation is Any:
        _refuse_non_finite(value, where)
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        _fail(where, f"expected true or false, got {value!r}")
    if annotation is int:
        number = _number(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if number is not None and number.is_integer():  # 1.6e6 or 1_600_000
            return int(number)
        _fail(where, f"expected a whole number, got {value!r}")
    if annotation is float:
        number = _number(value)
        if number is not None:
            _refuse_non_finite(number, where)
            return number
        _fail(where, f"expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. a config name like 20231101 written without quotes
        _fail(where, f"expected text, got {value!r}")
    if annotation is Path:
        if isinstance(value, (str, Path)):
            return Path(value).expanduser()
        _fail(where, f"expected a path, got {value!r}")
    raise TypeError(f"recipe fields of type {annotation!r} are not supported")


def _refuse_non_finite(value: Any, where: str) -> None:
    """NaN and infinity are never meaningful settings (`lr: .inf` would train a model to NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        _fail(where, f"expected a finite number, got {value!r}")
    if isinstance(value, Mapping):
        for key, element in value.items():
            _refuse_non_finite(element, _child(where, key))
    elif isinstance(value, (list, tuple)):
        for index, element in enumerate(value):
            _refuse_non_finite(element, f"{where}[{index}]")


def _number(value: Any) -> float | None:
    """`value` as a float; PyYAML reads `1.6e6` (no dot in the mantissa) as text, so parse text too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def _build_dataclass(cls: Any, value: Any, where: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        _fail(where, f"expected a mapping of {cls.__name__} settings, got {value!r}")
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(value) - set(fields), key=str)
    if unknown:
        _fail(
            where,
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(fields)}",
        )
    hints = typing.get_type_hints(cls)
    arguments = {}
    for name, field in fields.items():
        if name in value:
            arguments[name] = _convert(hints[name], value[name], _child(where, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            _fail(where, f"missing required key {name!r}")
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:  # a check in __post_init__ failed
        _fail(where, str(error))

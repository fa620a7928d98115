"""Training recipes: YAML files mapped onto typed dataclasses, with `--set key=value` overrides.

Every key is checked: an unknown one is an error that lists the valid keys of its section, and
values are converted to the field's type (so `lr: 1e-4`, which YAML reads as a string, works).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from diffutron.errors import DiffutronError
from diffutron.training.objective import MDLMObjective


@dataclass
class ModelSettings:
    """Either a checkpoint to start from, or a ModernBertConfig to build a new model from."""

    name_or_path: str | None = None  # local directory or hub id of a masked LM
    from_scratch: dict[str, Any] | None = None  # ModernBertConfig fields; vocabulary from the tokenizer

    def __post_init__(self) -> None:
        if (self.name_or_path is None) == (self.from_scratch is None):
            raise DiffutronError("model: set exactly one of model.name_or_path and model.from_scratch")


@dataclass
class DataSettings:
    """Directories written by `diffutron data pretrain` / `diffutron data sft` (datasets.save_to_disk)."""

    train: str = ""
    eval: str | None = None


@dataclass
class LoraSettings:
    """LoRA adapters (peft) on the encoder's linear layers; the MLM head is never adapted."""

    r: int = 256
    alpha: int = 256
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["Wqkv", "Wo", "Wi"])


@dataclass
class OptimizerSettings:
    """paged_adamw_8bit needs CUDA and bitsandbytes; elsewhere it falls back (logged) to adamw_torch."""

    name: Literal["paged_adamw_8bit", "adamw_torch"] = "adamw_torch"
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup: float = 0.1  # a ratio of the total steps when < 1, else a number of steps
    max_grad_norm: float = 1.0


@dataclass
class TrainingSettings:
    batch_size: int = 8  # per device
    gradient_accumulation: int = 1
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    max_length: int = 512
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where supported, else fp32
    gradient_checkpointing: bool = False
    dataloader_workers: int = 0


@dataclass
class CheckpointSettings:
    save_steps: int = 500
    keep_last: int = 3


@dataclass
class LoggingSettings:
    steps: int = 1
    tensorboard: bool = True  # used when the tensorboard package is installed


@dataclass
class Recipe:
    task: Literal["pretrain", "sft"]
    output_dir: str
    model: ModelSettings
    data: DataSettings
    tokenizer: str | None = None  # defaults to model.name_or_path
    seed: int = 42
    lora: LoraSettings | None = None  # null: every parameter is trained
    objective: MDLMObjective = field(default_factory=MDLMObjective)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            if self.model.name_or_path is None:
                raise DiffutronError("a model built from scratch needs `tokenizer:` (a directory or hub id)")
            self.tokenizer = self.model.name_or_path
        for name, value in (
            ("training.batch_size", self.training.batch_size),
            ("training.gradient_accumulation", self.training.gradient_accumulation),
            ("training.max_length", self.training.max_length),
            ("checkpoints.save_steps", self.checkpoints.save_steps),
            ("checkpoints.keep_last", self.checkpoints.keep_last),
            ("logging.steps", self.logging.steps),
        ):
            if value < 1:
                raise DiffutronError(f"{name} must be >= 1, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a YAML recipe, apply `key.sub=value` overrides, and check every key and type."""
    path = Path(path)
    if not path.is_file():
        raise DiffutronError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise DiffutronError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise DiffutronError(f"{path} must hold a mapping of settings, not {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    return build(Recipe, raw)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in a nested mapping; the value is parsed as YAML and typed later."""
    key, separator, text = override.partition("=")
    if not separator or not key.strip():
        raise DiffutronError(f"--set expects key=value (dotted keys for sections), got {override!r}")
    *sections, leaf = key.strip().split(".")
    target = raw
    for section in sections:
        if not isinstance(target.get(section), dict):
            target[section] = {}
        target = target[section]
    target[leaf] = yaml.safe_load(text) if text.strip() else None


def build(cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """Instantiate dataclass `cls` from a mapping, converting values to the field types."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        section = f"section {where!r}" if where else "the recipe"
        raise DiffutronError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in {section}; valid keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise DiffutronError(f"missing required key(s) {', '.join(_dotted(where, m) for m in missing)}")
    converted = {name: _convert(value, hints[name], _dotted(where, name)) for name, value in values.items()}
    return cls(**converted)


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


_NULLS = {"null", "none", "~"}
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _convert(value: Any, annotation: Any, key: str) -> Any:
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULLS):
            if type(None) in arguments:
                return None
        (inner,) = [argument for argument in arguments if argument is not type(None)]
        return _convert(value, inner, key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise DiffutronError(f"{key} must be a section (a mapping), got {value!r}")
        return build(annotation, value, key)
    if origin is Literal:
        if value not in arguments:
            raise DiffutronError(f"{key} must be one of {', '.join(map(str, arguments))}, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise DiffutronError(f"{key} must be a list, got {value!r}")
        return [_convert(item, arguments[0], f"{key}[]") for item in value]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise DiffutronError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    return _convert_scalar(value, annotation, key)


def _convert_scalar(value: Any, annotation: type, key: str) -> Any:
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            return _BOOLEANS[str(value).strip().lower()]
        if annotation is int and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if annotation is float and not isinstance(value, bool):
            return float(value)
        if annotation is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    except (KeyError, ValueError, TypeError):
        pass
    raise DiffutronError(f"{key} must be of type {annotation.__name__}, got {value!r}")

"""Training recipes: the typed dataclasses behind configs/*.yaml (`diffutron train CONFIG`).

Loading, `--set key=value` overrides, type checks and unknown-key errors are diffutron.typed_config's.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import ModernBertConfig

from diffutron import typed_config
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
    """paged_adamw_8bit needs CUDA and a working bitsandbytes (the `gpu` extra); elsewhere it falls back
    (logged) to adamw_torch, and under FSDP / DeepSpeed it is refused. adamw_torch_fused is torch's
    fused AdamW kernel (CUDA and CPU)."""

    name: Literal["paged_adamw_8bit", "adamw_torch", "adamw_torch_fused"] = "adamw_torch"
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup: float = 0.1  # a ratio of the total steps when < 1, else a number of steps
    max_grad_norm: float = 1.0  # 0: no clipping


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
    attention: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"  # flash_attention_2: CUDA + flash-attn
    group_by_length: bool = False  # batches of similar lengths (less padding; the order is no longer uniform)
    pad_to_multiple_of: int = 1  # e.g. 64 on GPUs; never past max_length


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
    push_to_hub: str | None = None  # a Hub repo id (owner/name): the final model is uploaded at the end

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            if self.model.name_or_path is None:
                raise DiffutronError("a model built from scratch needs `tokenizer:` (a directory or hub id)")
            self.tokenizer = self.model.name_or_path
        for name, value in (
            ("training.batch_size", self.training.batch_size),
            ("training.gradient_accumulation", self.training.gradient_accumulation),
            ("training.max_length", self.training.max_length),
            ("training.pad_to_multiple_of", self.training.pad_to_multiple_of),
            ("checkpoints.save_steps", self.checkpoints.save_steps),
            ("checkpoints.keep_last", self.checkpoints.keep_last),
            ("logging.steps", self.logging.steps),
        ):
            if value < 1:
                raise DiffutronError(f"{name} must be >= 1, got {value}")
        self._check_numbers()
        if self.push_to_hub is not None:
            from diffutron.model.hub_upload import check_repo_id

            check_repo_id(self.push_to_hub, "push_to_hub")
        if self.lora is not None and self.model.name_or_path is None:
            raise DiffutronError(
                "lora needs a trained base (model.name_or_path): a model built from scratch is trained in full "
                "(set lora: null)"
            )

    def _check_numbers(self) -> None:
        """Values the Trainer or peft would take silently and turn into a wrong or NaN run."""
        optimizer, training = self.optimizer, self.training
        if self.model.from_scratch is not None:
            _check_model_sizes(self.model.from_scratch)
        for name, value in (
            ("optimizer.lr", optimizer.lr),
            ("optimizer.weight_decay", optimizer.weight_decay),
            ("optimizer.warmup", optimizer.warmup),
            ("optimizer.max_grad_norm", optimizer.max_grad_norm),
            ("training.dataloader_workers", training.dataloader_workers),
        ):
            _require(name, value, value >= 0, ">= 0")
        if optimizer.warmup >= 1 and not float(optimizer.warmup).is_integer():
            raise DiffutronError(
                f"optimizer.warmup must be a ratio below 1 or a whole number of steps, got {optimizer.warmup}"
            )
        _require("training.epochs", training.epochs, training.epochs > 0, "> 0")
        if training.max_steps is not None:
            _require("training.max_steps", training.max_steps, training.max_steps >= 1, ">= 1 (or null: epochs)")
        if self.lora is not None:
            _require("lora.r", self.lora.r, self.lora.r >= 1, ">= 1")
            _require("lora.alpha", self.lora.alpha, self.lora.alpha > 0, "> 0")
            _require("lora.dropout", self.lora.dropout, 0 <= self.lora.dropout < 1, "in [0, 1)")
            if not self.lora.target_modules:
                raise DiffutronError("lora.target_modules is empty: name the linear modules to adapt (e.g. Wqkv)")

    def to_dict(self) -> dict[str, Any]:
        return typed_config.to_mapping(self)


def _require(name: str, value: float, condition: bool, wanted: str) -> None:
    if not math.isfinite(value) or not condition:
        raise DiffutronError(f"{name} must be a finite number {wanted}, got {value}")


# ModernBertConfig's size fields and its defaults for them (a recipe sets only what it changes)
_MODEL_SIZES = {
    name: inspect.signature(ModernBertConfig.__init__).parameters[name].default
    for name in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "max_position_embeddings",
    )
}


def _check_model_sizes(settings: dict[str, Any]) -> None:
    """Sizes ModernBERT cannot be built or run with, found here instead of deep inside the first step."""
    sizes = {name: settings.get(name, default) for name, default in _MODEL_SIZES.items()}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DiffutronError(f"model.from_scratch.{name} must be a whole number >= 1, got {value!r}")
    hidden, heads = sizes["hidden_size"], sizes["num_attention_heads"]
    if hidden % heads:
        raise DiffutronError(f"model.from_scratch.hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    if (hidden // heads) % 2:
        raise DiffutronError(
            f"model.from_scratch: hidden_size / num_attention_heads = {hidden // heads} must be even "
            "(rotary position embeddings rotate pairs of dimensions)"
        )


def load_training_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a YAML recipe, apply `key.sub=value` overrides, and check every key and type."""
    return typed_config.load_dataclass(Recipe, path, overrides)

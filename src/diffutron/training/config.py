"""Training recipes: the typed dataclasses behind configs/*.yaml (`diffutron train CONFIG`).

Loading, `--set key=value` overrides, type checks and unknown-key errors are diffutron.recipe's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from diffutron import recipe
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

    def __post_init__(self) -> None:
        if self.lora is not None and self.model.name_or_path is None:
            raise DiffutronError(
                "lora needs a trained base (model.name_or_path): a model built from scratch is trained in full "
                "(set lora: null)"
            )
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

    def to_dict(self) -> dict[str, Any]:
        return recipe.to_mapping(self)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a YAML recipe, apply `key.sub=value` overrides, and check every key and type."""
    return recipe.load_recipe(Recipe, path, overrides)

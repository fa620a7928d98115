"""What a data recipe (configs/data-*.yaml) can say, as typed dataclasses checked on load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from diffutron.data.conversations import Format, resolve_columns
from diffutron.data.sources import Source
from diffutron.errors import DiffutronError
from diffutron.typed_config import load_dataclass


@dataclass
class PretrainSource(Source):
    """A pretraining source; `keep` sources are kept whole, `pool` sources are merged and sampled."""

    text_field: str = "text"
    mode: Literal["keep", "pool"] = "pool"


@dataclass
class PretrainRecipe:
    output: Path
    tokenizer: str  # local directory or hub id; documents are measured in its tokens
    sources: list[PretrainSource]
    max_length: int = 512  # tokens per row (EOS included)
    pool_size: int | None = None  # documents sampled from the merged pool (null: the whole pool)
    seed: int = 42
    packing: bool = False  # false: one document per row (the paper); true: concatenate + chunk (dllm)
    append_eos: bool = True  # end every document with the EOS token
    max_document_tokens: int | None = None  # drop longer documents; default max_length unless packing
    shuffle: bool = True  # shuffle the final rows (kept + sampled) with the seed
    batch_size: int = 1000  # documents per tokenizer call
    max_shard_size: str = "500MB"

    def __post_init__(self) -> None:
        _check_common(self.sources, self.max_length, self.batch_size)
        if self.pool_size is not None:
            if self.pool_size < 1:
                raise DiffutronError(f"pool_size must be >= 1 or null, got {self.pool_size}")
            if not any(source.mode == "pool" for source in self.sources):
                raise DiffutronError("pool_size is set but no source has mode: pool")
        if self.packing and not self.append_eos:
            raise DiffutronError("packing joins documents with EOS: set append_eos: true (or packing: false)")
        if self.max_document_tokens is None and not self.packing:
            self.max_document_tokens = self.max_length
        if self.max_document_tokens is not None:
            if self.max_document_tokens < 1:
                raise DiffutronError(f"max_document_tokens must be >= 1, got {self.max_document_tokens}")
            if not self.packing and self.max_document_tokens > self.max_length:
                raise DiffutronError(
                    f"max_document_tokens ({self.max_document_tokens}) > max_length ({self.max_length}): "
                    "without packing every document is one row and must fit"
                )


@dataclass
class SFTSource(Source):
    """An instruction source: `format` says how a row becomes a conversation, `columns` where to look.

    instruction: columns instruction / input / output (LlamaTurk; user = instruction + "\\n\\n" + input)
    pair:        columns user / assistant (InstrucTurca: Input / Output)
    messages:    column messages, a list of {"role", "content"} ending with the assistant's answer
    text:        column text, plain text learned whole (every token labelled): replay against forgetting
    """

    format: Format = "messages"
    columns: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.columns = resolve_columns(self.format, self.columns, f"source {self.name!r}")


@dataclass
class SFTRecipe:
    output: Path
    tokenizer: str
    sources: list[SFTSource]
    max_length: int = 256  # longer examples are cut; those whose prompt leaves no room are dropped
    seed: int = 42
    eval_size: float = 0  # held-out examples: a count (>= 1) or a fraction (< 1); 0 for none
    eval_output: Path | None = None  # where the held-out split goes (default: <output>-eval)
    batch_size: int = 1000
    max_shard_size: str = "500MB"

    def __post_init__(self) -> None:
        _check_common(self.sources, self.max_length, self.batch_size)
        if self.eval_size < 0 or (self.eval_size >= 1 and not float(self.eval_size).is_integer()):
            raise DiffutronError(f"eval_size must be 0, a fraction below 1 or a whole count, got {self.eval_size}")
        if self.eval_size and self.eval_output is None:
            self.eval_output = self.output.with_name(f"{self.output.name}-eval")


def load_pretrain_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PretrainRecipe:
    return load_dataclass(PretrainRecipe, path, overrides)


def load_sft_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SFTRecipe:
    return load_dataclass(SFTRecipe, path, overrides)


def _check_common(sources: list, max_length: int, batch_size: int) -> None:
    if not sources:
        raise DiffutronError("sources is empty: list at least one dataset or file")
    names = [source.name for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DiffutronError(f"source names must be unique; repeated: {', '.join(duplicates)}")
    if max_length < 2:
        raise DiffutronError(f"max_length must be >= 2, got {max_length}")
    if batch_size < 1:
        raise DiffutronError(f"batch_size must be >= 1, got {batch_size}")

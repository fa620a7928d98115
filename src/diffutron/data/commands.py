"""`diffutron data pretrain` and `diffutron data sft`: training data from a YAML recipe (SFT: or flags).

Registered on the `data` sub-app in diffutron/cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from diffutron.errors import DiffutronError

SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a recipe key: key=value (repeatable), e.g. pool_size=1000.")
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace the output directory if it exists.")]


def pretrain(
    config: Annotated[Path, typer.Option("--config", "-c", help="Recipe YAML (see configs/data-pretrain-paper.yaml).")],
    overrides: SetOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Build the pretraining corpus: filter by length, keep / pool-sample, tokenize, write shards + manifest."""
    from diffutron.data.pretrain import build_pretrain
    from diffutron.data.recipes import load_pretrain_recipe

    build_pretrain(load_pretrain_recipe(config, overrides or []), console=Console(), overwrite=overwrite)


def sft(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Recipe YAML (see configs/data-sft-stage1.yaml).")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Without --config: a hub dataset id as the one source.")] = None,
    path: Annotated[
        Path | None, typer.Option(help="Without --config: a local .jsonl/.json/.parquet file as the one source.")
    ] = None,
    format: Annotated[str, typer.Option(help="Without --config: instruction, pair, messages or text.")] = "messages",
    column: Annotated[
        list[str] | None, typer.Option(help="Without --config: ROLE=COLUMN, e.g. user=Input (repeatable).")
    ] = None,
    split: Annotated[str, typer.Option(help="Without --config: the dataset split.")] = "train",
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer directory or hub id.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output directory.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per example (longer ones are cut).")] = None,
    eval_size: Annotated[float | None, typer.Option(help="Held-out examples: a count, or a fraction below 1.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the held-out split.")] = None,
    overrides: SetOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Build SFT data: chat-format conversations, prompt labelled -100, long prompts dropped, rest cut."""
    from diffutron.data.recipes import SFTRecipe, load_sft_recipe
    from diffutron.data.sft import build_sft
    from diffutron.recipe import apply_overrides, from_mapping

    flags = {"tokenizer": tokenizer, "output": output, "max_length": max_length, "eval_size": eval_size, "seed": seed}
    settings = [f"{key}={value}" for key, value in flags.items() if value is not None] + list(overrides or [])
    if config is not None:
        if dataset is not None or path is not None or column:
            raise DiffutronError(
                "--dataset / --path / --column describe a source without --config; put sources in the recipe instead"
            )
        recipe = load_sft_recipe(config, settings)
    else:
        if (dataset is None) == (path is None):
            raise DiffutronError("give --config RECIPE.yaml, or one source with --dataset ID or --path FILE")
        source: dict[str, Any] = {
            "name": dataset or path.stem,
            "format": format,
            "split": split,
            "columns": _columns(column or []),
        }
        source.update({"dataset": dataset} if dataset is not None else {"path": str(path)})
        data = {
            key: str(value) if isinstance(value, Path) else value for key, value in flags.items() if value is not None
        }
        data = apply_overrides({**data, "sources": [source]}, overrides or [])
        recipe = from_mapping(SFTRecipe, data, where="command line (--tokenizer, --output, ...)")
    build_sft(recipe, console=Console(), overwrite=overwrite)


def _columns(pairs: list[str]) -> dict[str, str]:
    columns = {}
    for pair in pairs:
        role, separator, name = pair.partition("=")
        if not separator or not role or not name:
            raise DiffutronError(f"--column expects ROLE=COLUMN (e.g. user=Input), got {pair!r}")
        columns[role] = name
    return columns

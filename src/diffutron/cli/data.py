"""`diffutron data pretrain | sft`: training data from a recipe (SFT also from flags alone)."""

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from diffutron.cli.console import RichReporter
from diffutron.cli.options import OldRecipeOption, OverwriteOption, RecipeArgument, SetOption, recipe_path
from diffutron.errors import DiffutronError

SOURCE_PANEL = "One source without a recipe"


def pretrain(
    recipe: RecipeArgument = None,
    config: OldRecipeOption = None,
    overrides: SetOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Build the pretraining corpus: filter by length, keep / pool-sample, tokenize, write shards."""
    from diffutron.data.pretrain import build_pretrain
    from diffutron.data.recipes import load_pretrain_recipe

    loaded = load_pretrain_recipe(recipe_path(recipe, config), overrides or [])
    with RichReporter() as reporter:
        build_pretrain(loaded, reporter=reporter, overwrite=overwrite)


def sft(
    recipe: RecipeArgument = None,
    config: OldRecipeOption = None,
    dataset: Annotated[Optional[str], typer.Option(help="A hub dataset id.", rich_help_panel=SOURCE_PANEL)] = None,
    path: Annotated[
        Optional[Path], typer.Option(help="A .jsonl, .json or .parquet file.", rich_help_panel=SOURCE_PANEL)
    ] = None,
    format: Annotated[
        Literal["instruction", "pair", "messages", "text"],
        typer.Option(help="How a row becomes a conversation.", rich_help_panel=SOURCE_PANEL),
    ] = "messages",
    column: Annotated[
        Optional[list[str]],
        typer.Option(help="ROLE=COLUMN, e.g. user=Input (repeatable).", rich_help_panel=SOURCE_PANEL),
    ] = None,
    split: Annotated[str, typer.Option(help="The dataset split.", rich_help_panel=SOURCE_PANEL)] = "train",
    tokenizer: Annotated[Optional[str], typer.Option(help="Tokenizer directory or hub id.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory.")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per example (longer ones are cut).")] = None,
    eval_size: Annotated[
        Optional[float], typer.Option(help="Held-out examples: a count, or a fraction below 1.")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the held-out split.")] = None,
    overrides: SetOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Build SFT data: chat-format conversations, prompt labelled -100, long prompts dropped, rest cut."""
    from diffutron.data.recipes import SFTRecipe, load_sft_recipe
    from diffutron.data.sft import build_sft
    from diffutron.typed_config import apply_overrides, from_mapping

    recipe = recipe_path(recipe, config, required=False)
    flags = {"tokenizer": tokenizer, "output": output, "max_length": max_length, "eval_size": eval_size, "seed": seed}
    settings = [f"{key}={value}" for key, value in flags.items() if value is not None] + list(overrides or [])
    if recipe is not None:
        if dataset is not None or path is not None or column:
            raise DiffutronError(
                "--dataset / --path / --column describe a source without a recipe; put sources in the recipe instead"
            )
        loaded = load_sft_recipe(recipe, settings)
    else:
        if (dataset is None) == (path is None):
            raise DiffutronError("give a recipe YAML, or one source with --dataset ID or --path FILE")
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
        loaded = from_mapping(SFTRecipe, data, where="command line (--tokenizer, --output, ...)")
    with RichReporter() as reporter:
        build_sft(loaded, reporter=reporter, overwrite=overwrite)


def _columns(pairs: list[str]) -> dict[str, str]:
    columns = {}
    for pair in pairs:
        role, separator, name = pair.partition("=")
        if not separator or not role or not name:
            raise DiffutronError(f"--column expects ROLE=COLUMN (e.g. user=Input), got {pair!r}")
        columns[role] = name
    return columns

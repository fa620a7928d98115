"""Options shared by several commands, defined once, and the sampler flags of the generating commands."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.presets import speed_config, speed_dtype

MODEL_PANEL = "Model and device"
SAMPLER_PANEL = "Sampler (model card defaults)"
FAST_PANEL = "Fast generation"
IO_PANEL = "Input and output"

Dtype = Literal["auto", "float32", "bfloat16", "float16", "int8"]

ModelOption = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        help="Checkpoint directory or hub id (default: the embedded model).",
        rich_help_panel=MODEL_PANEL,
    ),
]
DeviceOption = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.", rich_help_panel=MODEL_PANEL)]
DtypeOption = Annotated[
    Dtype,
    typer.Option(help="Precision; auto: what --speed picks on a CPU. int8: CPU only.", rich_help_panel=MODEL_PANEL),
]
JsonOutputOption = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Also write the results as JSON here.", rich_help_panel=IO_PANEL),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace the output if it exists.", rich_help_panel=IO_PANEL)
]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a recipe key: key=value, nested a.b=value (repeatable)."),
]
RecipeArgument = Annotated[Optional[Path], typer.Argument(help="Recipe YAML (see configs/).", show_default=False)]
OldRecipeOption = Annotated[Optional[Path], typer.Option("--config", "-c", hidden=True)]  # the former spelling


def recipe_path(positional: Optional[Path], option: Optional[Path], required: bool = True) -> Optional[Path]:
    """The recipe given as the argument (or, as before, with --config)."""
    from diffutron.errors import DiffutronError

    if positional is not None and option is not None:
        raise DiffutronError("give the recipe once: as the argument (or with --config), not both")
    path = positional if positional is not None else option
    if path is None and required:
        raise DiffutronError("give the recipe YAML file as the first argument (see configs/)")
    return path


_DEFAULTS = GenerationConfig()


def _sampler(default: Any, help: str, *names: str, **settings: Any) -> Any:
    return typer.Option(default, *names, help=help, rich_help_panel=SAMPLER_PANEL, **settings)


def _fast(default: Any, help: str) -> Any:
    return typer.Option(default, help=help, rich_help_panel=FAST_PANEL)


_GENERATION_OPTIONS: dict[str, tuple[Any, Any]] = {
    # field: (annotation, typer.Option), mirroring the model card's command line
    "max_new_tokens": (int, _sampler(_DEFAULTS.max_new_tokens, "Tokens to generate.")),
    "steps": (int, _sampler(_DEFAULTS.steps, "Model calls in total.")),
    "block_length": (int, _sampler(_DEFAULTS.block_length, "Tokens per semi-autoregressive block.")),
    "temperature": (float, _sampler(_DEFAULTS.temperature, "0 = greedy.")),
    "repetition_penalty": (float, _sampler(_DEFAULTS.repetition_penalty, "1.0 disables it.")),
    "penalty_scope": (
        Literal["canvas", "generated"],
        _sampler(_DEFAULTS.penalty_scope, "Tokens penalised: the whole canvas (model card) or generated ones."),
    ),
    "remasking": (Literal["low_confidence", "random"], _sampler(_DEFAULTS.remasking, "Which masks to commit first.")),
    # one-way flags (an --x/--no-x pair does not fit an 80-column help); the other spelling stays hidden
    "stochastic_transfer": (bool, _sampler(False, "Binomial reveal counts.", "--stochastic-transfer")),
    "no_stochastic_transfer": (bool, typer.Option(False, "--no-stochastic-transfer", hidden=True)),
    "cfg_scale": (float, _sampler(_DEFAULTS.cfg_scale, "Classifier-free guidance; 0 disables it.")),
    "no_early_stop": (
        bool,
        _sampler(False, "Run to the end even once every answer is complete.", "--no-early-stop"),
    ),
    "early_stop": (bool, typer.Option(False, "--early-stop", hidden=True)),  # the default
    "seed": (Optional[int], _sampler(None, "Random seed for reproducible sampling.")),
    "truncate": (Literal["error", "left"], _sampler(_DEFAULTS.truncate, "Long prompts: refuse, or cut from the left.")),
    # fast generation (docs/fast-generation.md): unset options take the --speed preset's value
    "speed": (Literal["exact", "fast", "fastest"], _fast("exact", "Preset: exact is the model card's output.")),
    "threshold": (Optional[float], _fast(None, "Parallel decoding: commit every token this confident.")),
    "factor": (Optional[float], _fast(None, "Parallel decoding by Fast-dLLM's factor rule.")),
    "cache": (Optional[Literal["none", "prefix", "dual"]], _fast(None, "Block cache.")),
    "refresh_every": (Optional[int], _fast(None, "Also refresh the cache every N calls of a block.")),
}


def with_generation_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every sampler flag; it receives them as one `config: GenerationConfig`.

    A command's `dtype="auto"` becomes the precision the --speed preset picks for the device.
    """
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "config"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        for name, (annotation, option) in _GENERATION_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        settings = {name: kwargs.pop(name) for name in _GENERATION_OPTIONS}
        speed = settings.pop("speed")
        settings.pop("no_stochastic_transfer")  # the default
        settings["early_stop"] = not settings.pop("no_early_stop")
        config = speed_config(speed, **{name: value for name, value in settings.items() if value is not None})
        if kwargs.get("dtype") == "auto":
            kwargs["dtype"] = speed_dtype(speed, kwargs.get("device"))
        return command(config=config, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
    return wrapper


def load(model: Optional[str], device: str, dtype: str) -> Any:
    """Load a checkpoint with a status spinner (torch is imported here, so --help stays fast)."""
    from rich.text import Text
    from transformers.utils import logging as transformers_logging

    from diffutron.cli.console import console
    from diffutron.lm import Diffutron

    transformers_logging.disable_progress_bar()  # the spinner says the same, once
    with console.status(Text(f"Loading {model or 'the embedded model'} ...")):
        return Diffutron.from_pretrained(model, device=device, dtype=dtype)

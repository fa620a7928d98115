"""Options shared by several commands, defined once, and the sampler flags of the generating commands."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from diffutron.sampling.config import MODEL_CARD_GROUP, Setting, choices, default, field_type, settings
from diffutron.sampling.presets import SPEEDS, speed_config, speed_dtype

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
JsonSchemaOption = Annotated[
    Optional[Path],
    typer.Option(
        "--json-schema",
        help="Answer JSON that validates against the JSON Schema in this file (docs/structured-output.md).",
        rich_help_panel=IO_PANEL,
    ),
]
JsonObjectOption = Annotated[
    bool, typer.Option("--json", help="Answer a JSON object (any keys).", rich_help_panel=IO_PANEL)
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


def response_format(json_schema: Optional[Path], json_object: bool):
    """The `response_format` of --json-schema FILE or --json (None: free answers); a bad schema fails here,
    before the model loads."""
    from diffutron.errors import DiffutronError
    from diffutron.files import read_json_object
    from diffutron.sampling.structured import response_format, schema_format

    if json_schema is not None and json_object:
        raise DiffutronError("give --json-schema FILE or --json, not both")
    if json_object:
        return response_format({"type": "json_object"})
    if json_schema is None:
        return None
    return schema_format(read_json_object(json_schema, "give a JSON Schema object"))


def recipe_path(positional: Optional[Path], option: Optional[Path], required: bool = True) -> Optional[Path]:
    """The recipe given as the argument (or, as before, with --config)."""
    from diffutron.errors import DiffutronError

    if positional is not None and option is not None:
        raise DiffutronError("give the recipe once: as the argument (or with --config), not both")
    path = positional if positional is not None else option
    if path is None and required:
        raise DiffutronError("give the recipe YAML file as the first argument (see configs/)")
    return path


def _generation_option(name: str, setting: Setting) -> tuple[Any, Any]:
    """A sampler flag from its `GenerationConfig` field: type, choices, default and help.

    The fast-generation flags default to unset, so that the --speed preset fills them.
    """
    kind, options, help = field_type(name), choices(name), setting.help
    if options is not None and kind is str:  # an open list (the commit rules): said in the help, checked by the config
        help = f"{help} One of: {', '.join(options)}."
    elif options is not None:
        kind = Literal[options]  # typer lists and checks the choices
    panel = SAMPLER_PANEL if setting.group == MODEL_CARD_GROUP else FAST_PANEL
    if setting.group == MODEL_CARD_GROUP and default(name) is not None:
        return kind, typer.Option(default(name), help=help, rich_help_panel=panel)
    return Optional[kind], typer.Option(None, help=help, rich_help_panel=panel)


def _flag_options(name: str, setting: Setting) -> dict[str, tuple[Any, Any]]:
    """A bool field as a one-way flag that changes its default (an --x/--no-x pair does not fit an
    80-column help); the other spelling is accepted, hidden."""
    on, off = f"--{name.replace('_', '-')}", f"--no-{name.replace('_', '-')}"
    visible, hidden = (off, on) if default(name) else (on, off)
    return {
        _parameter(visible): (bool, typer.Option(False, visible, help=setting.help, rich_help_panel=SAMPLER_PANEL)),
        _parameter(hidden): (bool, typer.Option(False, hidden, hidden=True)),
    }


def _parameter(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _generation_options() -> dict[str, tuple[Any, Any]]:
    """parameter name: (annotation, typer.Option), mirroring the model card's command line, then --speed
    and the fast-generation flags."""
    options: dict[str, tuple[Any, Any]] = {}
    speed_help = "Preset: exact is the model card's output."
    for name, setting in settings().items():
        if setting.group != MODEL_CARD_GROUP and "speed" not in options:  # the preset leads its panel
            options["speed"] = (Literal[SPEEDS], typer.Option("exact", help=speed_help, rich_help_panel=FAST_PANEL))
        if field_type(name) is bool:
            options |= _flag_options(name, setting)
        else:
            options[name] = _generation_option(name, setting)
    return options


_GENERATION_OPTIONS = _generation_options()


def _sampler_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The GenerationConfig fields the flags set (a bool field is set only by its visible flag)."""
    changes = {}
    for name in settings():
        if field_type(name) is bool:
            flipped = values[f"no_{name}"] if default(name) else values[name]
            changes[name] = not default(name) if flipped else default(name)
        elif values[name] is not None:
            changes[name] = values[name]
    return changes


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
        values = {name: kwargs.pop(name) for name in _GENERATION_OPTIONS}
        speed = values["speed"]
        config = speed_config(speed, **_sampler_settings(values))
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

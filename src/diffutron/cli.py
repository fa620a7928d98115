"""The `diffutron` command: a thin layer over the Python API.

Usage errors exit with status 2 and a one-line message, never a traceback.
"""

import functools
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from diffutron.errors import DiffutronError
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.presets import speed_config, speed_dtype

class _Commands(TyperGroup):
    """Turns a `DiffutronError` from any command into a one-line message and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DiffutronError as error:
            errors.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
            ctx.exit(2)


app = typer.Typer(
    name="diffutron",
    cls=_Commands,
    help="Turkish masked diffusion language models: chat, generate, infill, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Local checkpoint directory or hub id [default: the embedded model]."),
]
DeviceOption = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")]
DtypeOption = Annotated[
    str, typer.Option(help="auto (on a CPU: what --speed picks), float32, bfloat16, float16 or int8 (CPU).")
]

_DEFAULTS = GenerationConfig()
_GENERATION_OPTIONS: dict[str, tuple[Any, Any]] = {
    # field: (annotation, typer.Option) -- mirrors the model card's command line
    "steps": (int, typer.Option(_DEFAULTS.steps, help="Model calls in total (model card: 64).")),
    "max_new_tokens": (int, typer.Option(_DEFAULTS.max_new_tokens, help="Tokens to generate.")),
    "block_length": (int, typer.Option(_DEFAULTS.block_length, help="Tokens per semi-autoregressive block.")),
    "temperature": (float, typer.Option(_DEFAULTS.temperature, help="0 = greedy.")),
    "repetition_penalty": (float, typer.Option(_DEFAULTS.repetition_penalty, help="1.0 disables it.")),
    "remasking": (str, typer.Option(_DEFAULTS.remasking, help="low_confidence or random.")),
    "stochastic_transfer": (bool, typer.Option(_DEFAULTS.stochastic_transfer, help="Binomial reveal counts.")),
    "cfg_scale": (float, typer.Option(_DEFAULTS.cfg_scale, help="Classifier-free guidance; 0 disables it.")),
    "penalty_scope": (str, typer.Option(_DEFAULTS.penalty_scope, help="canvas (reference) or generated.")),
    "early_stop": (bool, typer.Option(_DEFAULTS.early_stop, help="Stop once every answer is complete.")),
    "seed": (Optional[int], typer.Option(None, help="Random seed for reproducible sampling.")),
    "truncate": (str, typer.Option(_DEFAULTS.truncate, help="error, or left: cut long prompts from the left.")),
    # fast generation (docs/fast-generation.md): unset options take the --speed preset's value
    "speed": (str, typer.Option("exact", help="exact (model card output), fast or fastest.")),
    "threshold": (Optional[float], typer.Option(None, help="Parallel decoding: commit every token this confident.")),
    "factor": (Optional[float], typer.Option(None, help="Parallel decoding by Fast-dLLM's factor rule.")),
    "cache": (Optional[str], typer.Option(None, help="Block cache: none, prefix or dual.")),
    "refresh_every": (Optional[int], typer.Option(None, help="Also refresh the cache every N calls of a block.")),
}


def with_generation_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every sampler flag; it receives them as one `config: GenerationConfig`."""
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
        config = speed_config(speed, **{name: value for name, value in settings.items() if value is not None})
        if kwargs.get("dtype") == "auto":
            kwargs["dtype"] = speed_dtype(speed, kwargs.get("device"))
        return command(config=config, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
    return wrapper


def load(model: Optional[str], device: str, dtype: str):
    """Load a checkpoint with a status spinner (imports torch lazily for a fast --help)."""
    from transformers.utils import logging as transformers_logging

    from diffutron.lm import Diffutron

    transformers_logging.disable_progress_bar()  # the spinner below says the same, once
    with console.status(f"Loading {model or 'the embedded model'} ..."):
        return Diffutron.from_pretrained(model, device=device, dtype=dtype)


@app.command()
@with_generation_options
def generate(
    prompts: Annotated[Optional[list[str]], typer.Argument(help="Prompts to answer.")] = None,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="JSONL file with {\"prompt\": ...} per line.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="JSONL file to write results to.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Continue plain text instead of using the chat format.")] = False,
    batch_size: Annotated[int, typer.Option(help="Prompts per batch.")] = 8,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    config: GenerationConfig = _DEFAULTS,
) -> None:
    """Answer prompts given on the command line or in a JSONL file."""
    from diffutron.generation_io import generate_jsonl, read_prompts

    if bool(prompts) == (input is not None):
        raise DiffutronError("give prompts as arguments or --input FILE (one of the two)")
    if batch_size < 1:
        raise DiffutronError(f"--batch-size must be >= 1, got {batch_size}")
    records = read_prompts(input) if input is not None else [{"prompt": p} for p in prompts or []]
    lm = load(model, device, dtype)
    results = generate_jsonl(lm, records, config, chat=not raw, batch_size=batch_size, output=output)
    if output is None:
        for record in results:
            if len(results) > 1:
                console.print(f"[bold]{record['prompt']}[/bold]")
            console.print(record["answer"], markup=False, highlight=False)
    else:
        console.print(f"wrote {len(results)} answers to {output}")


@app.command()
@with_generation_options
def chat(
    system: Annotated[Optional[str], typer.Option(help="System message for the conversation.")] = None,
    viz: Annotated[bool, typer.Option("--viz/--no-viz", help="Show the canvas while it denoises.")] = True,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    config: GenerationConfig = _DEFAULTS,
) -> None:
    """Talk with the model, several turns; /reset starts over, /exit (or Ctrl-D) quits."""
    from diffutron.chat_session import run_chat

    lm = load(model, device, dtype)
    run_chat(lm, config, system=system, viz=viz, console=console)


@app.command()
@with_generation_options
def infill(
    text: Annotated[str, typer.Argument(help="Text with [MASK] (one token) or [MASK:5] (five tokens) gaps.")],
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    config: GenerationConfig = _DEFAULTS,
) -> None:
    """Fill the gaps of a text and print it whole."""
    from diffutron.sampling.infill import parse_placeholders

    parse_placeholders(text)  # fail on a text without gaps before loading the model
    lm = load(model, device, dtype)
    console.print(lm.infill(text, config), markup=False, highlight=False)


@app.command()
def info(
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Parameters, context length, vocabulary, special tokens, dtype and device of a model."""
    details = load(model, device, dtype).info()
    if as_json:
        console.print_json(json.dumps(details))
        return
    from rich.table import Table

    table = Table(show_header=False)
    for key, value in details.items():
        if key == "special_tokens":
            value = ", ".join(f"{name}={token!r} ({index})" for name, (token, index) in value.items())
        elif key == "parameters":
            value = f"{value:,}"
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)


from diffutron.training import commands as training_commands  # noqa: E402

app.command()(training_commands.train)
app.command("merge-lora")(training_commands.merge_lora)
app.command("plot-loss")(training_commands.plot_loss)

from diffutron.data import commands as data_commands  # noqa: E402
from diffutron.data import embedded_commands  # noqa: E402

data_app = typer.Typer(name="data", help="Build corpora, tokenizers and training datasets.", no_args_is_help=True)
data_app.command("offline-corpus")(embedded_commands.offline_corpus)
data_app.command("train-tokenizer")(embedded_commands.train_tokenizer)
data_app.command("kenet-sft")(embedded_commands.kenet_sft)
data_app.command("pretrain")(data_commands.pretrain)
data_app.command("sft")(data_commands.sft)
app.add_typer(data_app)

from diffutron.eval.commands import eval_app  # noqa: E402

app.add_typer(eval_app)
import diffutron.eval.embedded_commands  # noqa: E402,F401  (registers unigram-baseline, definitions)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

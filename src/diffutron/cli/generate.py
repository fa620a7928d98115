"""`diffutron generate | chat | infill | info`: use a model."""

import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from diffutron.cli.console import console, say
from diffutron.cli.options import (
    IO_PANEL,
    DeviceOption,
    DtypeOption,
    JsonObjectOption,
    JsonSchemaOption,
    ModelOption,
    OverwriteOption,
    load,
    response_format,
    with_generation_options,
)
from diffutron.errors import DiffutronError
from diffutron.sampling.config import GenerationConfig

if TYPE_CHECKING:
    from diffutron.lm import Diffutron  # imported when a command runs, so that --help stays fast

_DEFAULTS = GenerationConfig()


InputOption = Annotated[
    Optional[Path],
    typer.Option("--input", "-i", help='JSONL file, {"prompt": ...} per line.', rich_help_panel=IO_PANEL),
]
OutputOption = Annotated[
    Optional[Path], typer.Option("--output", "-o", help="JSONL file for the answers.", rich_help_panel=IO_PANEL)
]
RawOption = Annotated[
    bool, typer.Option("--raw", help="Continue plain text, no chat format.", rich_help_panel=IO_PANEL)
]
AnimationOption = Annotated[
    Optional[Path],
    typer.Option(help="Also draw the denoising of the answer: a .gif or .svg (one prompt).", rich_help_panel=IO_PANEL),
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Keep the answers of an interrupted --output run.", rich_help_panel=IO_PANEL)
]


@with_generation_options
def generate(
    prompts: Annotated[Optional[list[str]], typer.Argument(help="Prompts to answer.", show_default=False)] = None,
    input: InputOption = None,
    output: OutputOption = None,
    raw: RawOption = False,
    batch_size: Annotated[int, typer.Option(help="Prompts per batch.", rich_help_panel=IO_PANEL)] = 8,
    animation: AnimationOption = None,
    overwrite: OverwriteOption = False,
    resume: ResumeOption = False,
    json_schema: JsonSchemaOption = None,
    json_object: JsonObjectOption = False,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    config: GenerationConfig = _DEFAULTS,
) -> None:
    """Answer prompts given on the command line or in a JSONL file.

    Under `torchrun --nproc-per-node N -m diffutron generate -i IN -o OUT` (or accelerate launch) the
    records are shared out among the processes and merged into OUT in input order.
    """
    from diffutron.cli.jsonl_batch import generate_jsonl, read_prompts
    from diffutron.files import check_destination
    from diffutron.model.tokens import check_unicode

    if bool(prompts) == (input is not None):
        raise DiffutronError("give prompts as arguments or --input FILE (one of the two)")
    for index, prompt in enumerate(prompts or []):  # before loading the model
        check_unicode(prompt, f"prompt {index}")
    structured = response_format(json_schema, json_object)
    if batch_size < 1:
        raise DiffutronError(f"--batch-size must be >= 1, got {batch_size}")
    from diffutron.distributed import current_launch

    sharded = output is not None and (resume or current_launch().distributed)
    if resume and output is None:
        raise DiffutronError("--resume completes an --output file: give --output FILE")
    if output is not None:  # before the work: a bad destination must not cost the answers
        check_destination(output, kind="file", overwrite=overwrite or sharded, inputs=[input])
    if animation is not None:
        if structured is not None:
            raise DiffutronError("--animation draws free answers: leave out --json-schema / --json")
        _check_animation(animation, output, len(prompts or []) if input is None else 0, sharded, overwrite)
    records = read_prompts(input) if input is not None else [{"prompt": p} for p in prompts or []]
    if sharded:
        from diffutron.cli.jsonl_batch import generate_jsonl_sharded
        from diffutron.distributed import launch_device

        lm = load(model, launch_device(current_launch(), device), dtype)
        results = generate_jsonl_sharded(
            lm,
            records,
            config,
            chat=not raw,
            batch_size=batch_size,
            output=output,
            resume=resume,
            overwrite=overwrite,
            response_format=structured,
        )
        if results is not None:
            say(f"wrote {len(results)} answers to {output}")
        return
    lm = load(model, device, dtype)
    if animation is not None:
        _answer_with_animation(lm, records[0], animation, output, config, chat=not raw, overwrite=overwrite)
        return
    results = generate_jsonl(
        lm, records, config, chat=not raw, batch_size=batch_size, output=output, response_format=structured
    )
    if output is None:
        for record in results:
            if len(results) > 1:
                say(record["prompt"], style="bold")
            say(record["answer"])
    else:
        say(f"wrote {len(results)} answers to {output}")


def _check_animation(animation: Path, output: Optional[Path], prompts: int, sharded: bool, overwrite: bool) -> None:
    """--animation draws one answer (`prompts` given as arguments), in one process, to a file of its own."""
    from diffutron.files import check_destination

    if prompts != 1:
        raise DiffutronError("--animation draws one answer: give exactly one prompt, without --input")
    if sharded:
        raise DiffutronError("--animation draws one answer in one process: leave out --resume and the launcher")
    if output is not None and output.absolute() == animation.absolute():
        raise DiffutronError(f"--output and --animation both name {output}: give two files")
    check_destination(animation, kind="file", overwrite=overwrite)


def _answer_with_animation(
    lm: "Diffutron",
    record: dict,
    animation: Path,
    output: Optional[Path],
    config: GenerationConfig,
    *,
    chat: bool,
    overwrite: bool,
) -> None:
    """Answer one prompt and draw its denoising; with --output the answer is also written there, as
    the command writes it without --animation."""
    from diffutron.cli.jsonl_batch import answer_record, answer_settings, write_answers
    from diffutron.viz.animation import animate_answer

    answer = animate_answer(lm, record["prompt"], animation, config, chat=chat, overwrite=overwrite)
    say(answer)
    say(f"wrote the animation to {animation}")
    if output is not None:
        write_answers(output, [answer_record(record, answer, answer_settings(lm, config, chat))])
        say(f"wrote 1 answer to {output}")


@with_generation_options
def chat(
    system: Annotated[Optional[str], typer.Option(help="System message for the conversation.")] = None,
    viz: Annotated[bool, typer.Option("--viz/--no-viz", help="Show the canvas while it denoises.")] = True,
    json_schema: JsonSchemaOption = None,
    json_object: JsonObjectOption = False,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    config: GenerationConfig = _DEFAULTS,
) -> None:
    """Talk with the model, several turns; /reset starts over, /exit (or Ctrl-D) quits."""
    from diffutron.cli.chat_session import run_chat
    from diffutron.model.tokens import check_unicode

    if system is not None:
        check_unicode(system, "--system")
    structured = response_format(json_schema, json_object)
    if isinstance(sys.stdin, io.TextIOWrapper):  # bytes that are not UTF-8 reach the chat's check, not a traceback
        sys.stdin.reconfigure(errors="surrogateescape")
    lm = load(model, device, dtype)
    run_chat(lm, config, system=system, viz=viz, console=console, response_format=structured)


@with_generation_options
def infill(
    text: Annotated[str, typer.Argument(help="Text with \\[MASK] (one token) or \\[MASK:5] (five tokens) gaps.")],
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    config: GenerationConfig = _DEFAULTS,
) -> None:
    """Fill the gaps of a text and print it whole."""
    from diffutron.model.tokens import check_unicode
    from diffutron.sampling.infill import parse_placeholders

    parse_placeholders(check_unicode(text, "the text"))  # fail on a text without gaps before loading the model
    lm = load(model, device, dtype)
    say(lm.infill(text, config))


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
    from rich.text import Text

    table = Table(show_header=False)
    for key, value in details.items():
        if key == "special_tokens":
            value = ", ".join(f"{name}={token!r} ({index})" for name, (token, index) in value.items())
        elif key == "parameters":
            value = f"{value:,}"
        table.add_row(key.replace("_", " "), Text(str(value)))
    console.print(table)

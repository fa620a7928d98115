"""The `diffutron` command: one table of commands over the Python API.

This package is the only one that knows about typer and the terminal. Usage errors (a
`DiffutronError` from any layer) print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.text import Text
from typer._click.exceptions import UsageError  # typer's own click; it does not export this base class
from typer.core import TyperGroup

from diffutron.cli import data, embedded, evaluate, generate, serve, share, train
from diffutron.cli.console import errors
from diffutron.errors import DiffutronError

Command = Callable[..., Any]

# name -> command, or a group: name -> (help, {subcommand -> command})
COMMANDS: dict[str, Command | tuple[str, dict[str, Command]]] = {
    "chat": generate.chat,
    "generate": generate.generate,
    "infill": generate.infill,
    "info": generate.info,
    "serve": serve.serve,
    "train": train.train,
    "merge-lora": train.merge_lora,
    "plot-loss": train.plot_loss,
    "card": share.card,
    "push": share.push,
    "data": (
        "Build training data from recipes.",
        {"pretrain": data.pretrain, "sft": data.sft},
    ),
    "eval": (
        "Evaluate: MLM perplexity, the paper's CETVEL subset, any lm-evaluation-harness task.",
        {"ppl": evaluate.ppl, "cetvel": evaluate.cetvel, "lm-eval": evaluate.lm_eval},
    ),
    "embedded": (
        "Build and judge the small model embedded in the package (docs/embedded-model.md).",
        {
            "offline-corpus": embedded.offline_corpus,
            "train-tokenizer": embedded.train_tokenizer,
            "kenet-sft": embedded.kenet_sft,
            "unigram-baseline": embedded.unigram_baseline,
            "definitions": embedded.definitions,
        },
    ),
}

# former spellings, still accepted but not listed: (group, name) -> (group, name)
ALIASES = {
    ("data", "offline-corpus"): ("embedded", "offline-corpus"),
    ("data", "train-tokenizer"): ("embedded", "train-tokenizer"),
    ("data", "kenet-sft"): ("embedded", "kenet-sft"),
    ("eval", "unigram-baseline"): ("embedded", "unigram-baseline"),
    ("eval", "definitions"): ("embedded", "definitions"),
}

# lm-eval parses its own arguments
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
SETTINGS = {("eval", "lm-eval"): PASS_THROUGH}


class _Commands(TyperGroup):
    """Turns a `DiffutronError` or a bad option of any command into one line and exit status 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DiffutronError as error:
            _fail(ctx, str(error))
        except UsageError as error:
            where = error.ctx.command_path if error.ctx is not None else ctx.command_path
            _fail(ctx, f"{error.format_message()} (see `{where} --help`)")


def _fail(ctx: typer.Context, message: str) -> None:
    errors.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)
    ctx.exit(2)


def build_app() -> typer.Typer:
    """The command line from COMMANDS and ALIASES."""
    root = typer.Typer(
        name="diffutron",
        cls=_Commands,
        help="Turkish masked diffusion language models: chat, generate, infill, train, evaluate.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    groups: dict[str, typer.Typer] = {}
    for name, entry in COMMANDS.items():
        if callable(entry):
            root.command(name)(entry)
            continue
        help, commands = entry
        groups[name] = typer.Typer(name=name, help=help, no_args_is_help=True)
        for command_name, command in commands.items():
            groups[name].command(command_name, context_settings=SETTINGS.get((name, command_name)))(command)
    for (group, name), (target_group, target) in ALIASES.items():
        command = COMMANDS[target_group][1][target]  # type: ignore[index]
        groups[group].command(name, hidden=True, help=f"Former name of `{target_group} {target}`.")(command)
    for name, group in groups.items():
        root.add_typer(group, name=name)
    return root


app = build_app()


def main() -> None:
    app()

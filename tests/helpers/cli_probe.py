"""A command with every sampler flag that records the GenerationConfig it is given (no model loaded)."""

from __future__ import annotations

from typing import Any

import typer

from diffutron.cli.options import with_generation_options


def generation_probe() -> tuple[typer.Typer, dict[str, Any]]:
    """The command, and the dict in which each run leaves its `config`."""
    seen: dict[str, Any] = {}

    @with_generation_options
    def probe(config=None):
        seen["config"] = config

    command = typer.Typer()
    command.command()(probe)
    return command, seen

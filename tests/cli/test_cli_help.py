"""Every command's help reads well in an 80-column terminal: no option name cut, choices listed."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from diffutron.cli import ALIASES, COMMANDS, app

ROOT = typer.main.get_command(app)


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the table, except lm-eval (its help is lm-eval's own)."""
    paths = []
    for name, entry in COMMANDS.items():
        if callable(entry):
            paths.append((name,))
        else:
            paths.append((name,))
            paths.extend((name, sub) for sub in entry[1] if (name, sub) != ("eval", "lm-eval"))
    return paths


def resolve(path: tuple[str, ...]):
    command = ROOT
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_help_at_80_columns_shows_every_option_name_whole(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80
    assert "…" not in result.output
    command = resolve(path)
    for parameter in getattr(command, "params", []):
        if getattr(parameter, "hidden", False):
            continue
        for name in [*parameter.opts, *getattr(parameter, "secondary_opts", [])]:
            if name.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.output), (name, result.output)


def test_choice_options_list_and_check_their_choices():
    help_text = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "80"}).output
    assert "low_confidence|random" in help_text and "exact|fast|fastest" in help_text
    result = CliRunner().invoke(app, ["generate", "a", "--penalty-scope", "everything"])
    assert result.exit_code == 2
    assert "'everything' is not one of 'canvas', 'generated'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_former_command_names_still_run_but_are_not_listed():
    for (group, name), (target_group, _target) in ALIASES.items():
        listed = CliRunner().invoke(app, [group, "--help"], env={"COLUMNS": "80"}).output
        assert f" {name} " not in listed
        assert name in CliRunner().invoke(app, [target_group, "--help"], env={"COLUMNS": "80"}).output
        assert CliRunner().invoke(app, [group, name, "--help"]).exit_code == 0


def test_former_option_spellings_still_parse():
    from helpers.cli_probe import generation_probe

    command, seen = generation_probe()
    for flags, expected in [
        (["--early-stop"], (True, False)),
        (["--no-early-stop"], (False, False)),
        (["--no-stochastic-transfer"], (True, False)),
        (["--stochastic-transfer"], (True, True)),
    ]:
        result = CliRunner().invoke(command, flags)
        assert result.exit_code == 0, result.output
        assert (seen["config"].early_stop, seen["config"].stochastic_transfer) == expected

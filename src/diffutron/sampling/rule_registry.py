"""The commit rules' names and their lookup, below both `GenerationConfig` and the rules.

A rule is the `CommitRule` subclass defined in `rules/<name>.py` whose `name` is the file's name.
Listing the names reads the folder, so it imports nothing (torch stays unloaded for
`diffutron --help`); a rule's file is imported when the rule is first used, and its class enters
the registry as it is defined (`CommitRule.__init_subclass__`).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from diffutron.errors import SettingError

DEFAULT_RULE = "count"
RULES_PACKAGE = "diffutron.sampling.rules"
_RULES_FOLDER = Path(__file__).with_name("rules")
_registered: dict[str, type] = {}


def rule_names() -> tuple[str, ...]:
    """Every rule's name, the default first (file names of the rules folder; modules starting with _ are helpers)."""
    found = sorted(
        module.name for module in pkgutil.iter_modules([str(_RULES_FOLDER)]) if not module.name.startswith("_")
    )
    return (DEFAULT_RULE, *[name for name in found if name != DEFAULT_RULE])


def register(rule: type) -> None:
    """Record a `CommitRule` subclass if it is the rule its own file is named after."""
    name = vars(rule).get("name")
    if name is not None and rule.__module__ == f"{RULES_PACKAGE}.{name}":
        _registered[name] = rule


def rule_class(name: str) -> type:
    """The `CommitRule` subclass called `name` (its file imported on first use)."""
    if name not in rule_names():
        raise SettingError(f"unknown rule {name!r}; choose one of: {', '.join(rule_names())}", "rule")
    importlib.import_module(f"{RULES_PACKAGE}.{name}")
    return _registered[name]

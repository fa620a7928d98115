"""YAML recipes onto typed dataclasses: types checked, unknown keys listed, overrides applied."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from diffutron.errors import DiffutronError
from diffutron.typed_config import load_dataclass, to_mapping


@dataclass
class Part:
    name: str
    mode: Literal["keep", "pool"] = "pool"
    limit: int | None = None


@dataclass
class Recipe:
    parts: list[Part]
    output: Path = Path("out")
    rate: float = 0.5
    flags: dict[str, bool] = field(default_factory=dict)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_types_are_converted_and_overrides_win(tmp_path):
    path = write(tmp_path, "parts:\n  - name: a\n    limit: 1.6e6\nrate: 1\nflags: {x: true}\n")
    recipe = load_dataclass(Recipe, path, ["output=elsewhere", "rate=0.25"])
    assert recipe == Recipe([Part("a", "pool", 1_600_000)], Path("elsewhere"), 0.25, {"x": True})
    assert to_mapping(recipe)["output"] == "elsewhere"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("parts: []\nouptut: x\n", "unknown key 'ouptut'; valid keys: parts, output, rate, flags"),
        ("parts:\n  - {name: a, lmit: 3}\n", "parts[0]: unknown key 'lmit'; valid keys: name, mode, limit"),
        ("parts:\n  - {name: a, mode: all}\n", "parts[0].mode: 'all' is not one of 'keep', 'pool'"),
        ("parts:\n  - {name: a, limit: many}\n", "parts[0].limit: expected a whole number"),
        ("rate: 2\n", "missing required key 'parts'"),
        ("parts: [\n", "not valid YAML"),
        ("- a\n", "must be a YAML mapping"),
    ],
)
def test_bad_recipes_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DiffutronError, match="recipe.yaml") as caught:
        load_dataclass(Recipe, path)
    assert message in str(caught.value)


def test_bad_override(tmp_path):
    path = write(tmp_path, "parts: []\n")
    with pytest.raises(DiffutronError, match="key=value"):
        load_dataclass(Recipe, path, ["rate"])
    with pytest.raises(DiffutronError, match="unknown key 'nope'"):
        load_dataclass(Recipe, path, ["nope=1"])

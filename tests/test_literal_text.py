"""The CETVEL table shows the model name (a user's path) literally: square brackets are not rich
markup ("[corpus]" keeps its brackets, "[/foo]" does not crash)."""

from __future__ import annotations

from rich.console import Console

from diffutron.cli.reports import cetvel_table

USER_TEXTS = ["[corpus]", "a [/foo] b", "[red]kırmızı[/red]", "[bold]"]


def test_cetvel_table_shows_the_model_name_literally():
    report = {"tasks": [], "average": 0.0, "average_chance": 0.0, "average_majority": 0.0, "paper_average": None}
    for name in USER_TEXTS:
        console = Console(record=True, width=200, color_system=None)
        console.print(cetvel_table(report, name))
        assert name in console.export_text()

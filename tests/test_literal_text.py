"""User text (source names, paths, model names) is shown literally by the domain's rich tables and
progress bars: square brackets are not rich markup ("[corpus]" keeps its brackets, "[/foo]" does not
crash)."""

from __future__ import annotations

from rich.console import Console

from diffutron.data.progress import data_progress, summary_table, tracked
from diffutron.eval.report import cetvel_table

USER_TEXTS = ["[corpus]", "a [/foo] b", "[red]kırmızı[/red]", "[bold]"]


def _rendered(*renderables) -> str:
    console = Console(record=True, width=200, color_system=None)
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def test_summary_tables_and_progress_bars_print_user_text_literally():
    table = summary_table(f"out/{USER_TEXTS[1]}: 4 rows", ("source", "kept"), [(text, 1) for text in USER_TEXTS])
    text = _rendered(table)
    assert "out/a [/foo] b: 4 rows" in text
    assert all(user_text in text for user_text in USER_TEXTS)
    console = Console(record=True, width=200, color_system=None)
    with data_progress(console) as progress:
        for user_text in USER_TEXTS:
            list(tracked(progress, [1], f"{user_text}: reading + tokenizing", 1))
    shown = console.export_text()
    assert all(f"{user_text}: reading + tokenizing" in shown for user_text in USER_TEXTS)


def test_cetvel_table_shows_the_model_name_literally():
    report = {"tasks": [], "average": 0.0, "average_chance": 0.0, "average_majority": 0.0, "paper_average": None}
    for name in USER_TEXTS:
        assert name in _rendered(cetvel_table(report, name))

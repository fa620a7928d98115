"""Progress bars for the long data steps and the summary table printed at the end.

Descriptions, titles and cells hold user text (source names, paths): rendered literally, never
read as rich markup (a source named "[corpus]" keeps its brackets).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

T = TypeVar("T")


def data_progress(console: Console) -> Progress:
    """Bars with counts, rate and time; streams of unknown length show a spinner and a running count."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def tracked(progress: Progress, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield `items`, advancing a bar (completed when the items run out)."""
    task = progress.add_task(description, total=total)
    count = 0
    for item in items:
        yield item
        count += 1
        progress.advance(task)
    progress.update(task, total=count, completed=count)


def summary_table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A table with a text first column and right-aligned numbers (thousands separated)."""
    table = Table(title=Text(title))
    for index, name in enumerate(header):
        table.add_column(Text(name), justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(Text(f"{value:,}" if isinstance(value, int) else str(value)) for value in row))
    return table

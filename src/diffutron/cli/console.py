"""The terminal: the one console for results, one for errors, progress bars and tables."""

from __future__ import annotations

import contextlib
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

from diffutron.progress import Reporter

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)


def say(message: str, style: str | None = None) -> None:
    """Print plain text (user text included) literally: square brackets are not markup here."""
    console.print(Text(message, style=style or ""), soft_wrap=True)


def warn(message: str) -> None:
    errors.print(Text.assemble(("warning: ", "yellow"), message), soft_wrap=True)


def summary_table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A table with a text first column and right-aligned numbers (thousands separated)."""
    table = Table(title=Text(title))
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(Text(f"{value:,}" if isinstance(value, int) else str(value)) for value in row))
    return table


class RichReporter(Reporter):
    """Progress bars with counts, rate and time (a spinner and a running count when the total is
    unknown), warnings and summary tables on `console`. Use it as a context manager."""

    def __init__(self, output: Console | None = None) -> None:
        self.console = output or console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        task = self.progress.add_task(description, total=total)
        count = 0
        for item in items:
            yield item
            count += 1
            self.progress.advance(task)
        self.progress.update(task, total=count, completed=count)

    @contextlib.contextmanager
    def busy(self, description: str) -> Iterator[None]:
        task = self.progress.add_task(description, total=None)
        yield
        self.progress.update(task, total=1, completed=1)

    def warn(self, message: str) -> None:
        self.console.print(Text.assemble(("warning: ", "yellow"), message), soft_wrap=True)

    def table(self, title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.console.print(summary_table(title, header, rows))

"""Progress and messages from long-running domain code, without tying it to a terminal.

Domain functions take a `Reporter` and call it; the base class stays silent (the Python API,
tests). The command line passes one that draws progress bars and tables (diffutron.cli.console).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class Reporter:
    """Silent by default; subclasses show what happens. Messages are plain text, never markup."""

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Yield `items`, counting them against `total` (None: an unknown number)."""
        yield from items

    @contextlib.contextmanager
    def busy(self, description: str) -> Iterator[None]:
        """A step of unknown length, such as writing the output."""
        yield

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the work."""

    def table(self, title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """A summary at the end: a text first column, then numbers."""

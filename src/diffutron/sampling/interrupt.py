"""Stopping a sampler loop that nobody waits for any more, from inside it.

A server's worker thread runs the sampler; a request can ask for work (a step schedule of a
billion steps) that loops long in Python before the first model call. The worker names a
condition with `interrupt_when`; the sampler's long loops call `checkpoint`, which raises
`Interrupted` once the condition holds. Outside such a block `checkpoint` does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

CHECK_EVERY = 1024  # iterations of a long loop between two checks
_local = threading.local()


class Interrupted(Exception):
    """The work was given up: the condition given to `interrupt_when` held at a checkpoint."""


@contextmanager
def interrupt_when(condition: Callable[[], bool]) -> Iterator[None]:
    """Within this block, on this thread, `checkpoint` raises `Interrupted` once `condition()` is true."""
    previous = getattr(_local, "condition", None)
    _local.condition = condition
    try:
        yield
    finally:
        _local.condition = previous


def checkpoint(iteration: int = 0) -> None:
    """Raise `Interrupted` if this thread's work was given up (looked at every CHECK_EVERY iterations)."""
    if iteration % CHECK_EVERY:
        return
    condition = getattr(_local, "condition", None)
    if condition is not None and condition():
        raise Interrupted("the work was given up")

"""Loaded at the start of a test server's Python (its directory on PYTHONPATH): a step schedule of
the most steps a request may ask for (WORK_CAP in one block) loops until the worker gives it up,
as a schedule far beyond that cap would; a stuck worker that a request can reach."""

from __future__ import annotations

import time

from diffutron.sampling import schedule
from diffutron.sampling.config import WORK_CAP
from diffutron.sampling.interrupt import checkpoint
from diffutron.sampling.rules import count

_real_transfer_counts = schedule.transfer_counts


def _stuck_at_the_cap(masked: int, steps: int) -> list[int]:
    if steps < WORK_CAP:
        return _real_transfer_counts(masked, steps)
    while True:
        checkpoint()
        time.sleep(0.001)


count.transfer_counts = _stuck_at_the_cap

"""`batch_size=auto` for scoring: as many rows of the full window per forward pass as the device holds.

On a CUDA device the memory one row of `window` tokens costs is measured with a real forward pass,
the free memory divides into rows, and the largest size that then really runs (halving after an
out-of-memory error) is taken. On a CPU, memory is rarely the limit and larger batches do not
run faster, so a fixed size is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from diffutron.model.parts import MaskedLMParts

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 32
MAX_AUTO_BATCH_SIZE = 512
FREE_MEMORY_SHARE = 0.8  # of the memory free after loading: the rest for the allocator and the head's chunks


def rows_that_fit(free_bytes: int, bytes_per_row: int, ceiling: int = MAX_AUTO_BATCH_SIZE) -> int:
    return max(1, min(ceiling, int(free_bytes * FREE_MEMORY_SHARE) // max(1, bytes_per_row)))


def largest_that_runs(run: Callable[[int], None], size: int) -> int:
    """`size`, halved until `run(size)` completes without running out of memory (at least 1)."""
    while True:
        try:
            run(size)
            return size
        except torch.OutOfMemoryError:
            if size == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size //= 2


def auto_batch_size(model: torch.nn.Module, window: int, device: torch.device) -> int:
    """Rows of `window` tokens per scoring forward pass on `device`."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    parts = MaskedLMParts(model)
    vocabulary = int(model.config.vocab_size)

    def run(rows: int) -> None:
        ids = torch.randint(0, vocabulary, (rows, window), device=device)
        with torch.inference_mode():
            hidden = parts.hidden(ids, torch.ones_like(ids))
            parts.logits(hidden[:, 0], pad=False)
        torch.cuda.synchronize(device)

    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run(1)
    per_row = torch.cuda.max_memory_allocated(device) - before
    free, _ = torch.cuda.mem_get_info(device)
    size = largest_that_runs(run, rows_that_fit(free, per_row))
    log.info("batch_size auto: %d rows of %d tokens (%.1f MiB per row measured)", size, window, per_row / 2**20)
    return size

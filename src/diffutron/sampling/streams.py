"""Per-row random streams: a seeded row draws the same numbers alone or in any batch.

Row i of a call seeded with `seed` draws from a generator seeded with `seed + i` (i counted in
the caller's whole input, not in its batch), so prompt i of a seeded call and a call of that
prompt alone seeded with `seed + i` decode identically; `n` copies of one request, seeded
seed, seed + 1, ..., are the same rows a seeded call over n copies of the prompt would make.
A row draws only when it has positions to decide, so idle steps (finished rows, zero budgets)
never shift its stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SEED_MODULUS = 2**64  # torch generators take seeds in [0, 2**64)


def row_seeds_for(seed: int | None, rows: int, first_index: int = 0) -> list[int | None]:
    """The seeds of rows first_index .. first_index + rows - 1 of a call seeded with `seed`."""
    return seeds_at(seed, range(first_index, first_index + rows))


def seeds_at(seed: int | None, positions: Sequence[int]) -> list[int | None]:
    """The seeds of the rows at `positions` of a call seeded with `seed`."""
    if seed is None:
        return [None] * len(positions)
    return [(seed + position) % SEED_MODULUS for position in positions]


class RowStreams:
    """One generator per row; a row without a seed draws from torch's global generator."""

    def __init__(self, seeds: Sequence[int | None], device: torch.device) -> None:
        self.device = device
        self.generators = [
            None if seed is None else torch.Generator(device=device).manual_seed(int(seed) % SEED_MODULUS)
            for seed in seeds
        ]

    def add(self, seeds: Sequence[int | None]) -> None:
        self.generators += RowStreams(seeds, self.device).generators

    def keep(self, rows: Sequence[int]) -> None:
        self.generators = [self.generators[row] for row in rows]

    def __len__(self) -> int:
        return len(self.generators)

    @property
    def seeded(self) -> bool:
        return any(generator is not None for generator in self.generators)

    def rand(self, counts: Sequence[int], *tail: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform numbers of shape (sum(counts), *tail): `counts[i]` draws of row i, rows in order."""
        if not self.seeded:
            return torch.rand((sum(counts), *tail), dtype=dtype, device=self.device)
        parts = [
            torch.rand((count, *tail), dtype=dtype, device=self.device, generator=generator)
            for generator, count in zip(self.generators, counts, strict=True)
            if count > 0
        ]
        if not parts:
            return torch.empty((0, *tail), dtype=dtype, device=self.device)
        return torch.cat(parts)

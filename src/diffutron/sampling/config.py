"""Generation settings, with the model card's defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from diffutron.errors import DiffutronError

REMASKING_CHOICES = ("low_confidence", "random")
PENALTY_SCOPES = ("canvas", "generated")
TRUNCATE_CHOICES = ("error", "left")
CACHE_CHOICES = ("none", "prefix", "dual")


@dataclass(frozen=True)
class GenerationConfig:
    """Options of the masked-diffusion sampler (docs/reference-behaviour.md, section 3).

    Defaults reproduce the DiffutronLM model card: 64 new tokens in 64 steps, blocks of 32,
    temperature 0.1, repetition penalty 1.2, low-confidence remasking.

    Fast generation (docs/fast-generation.md): `threshold` or `factor` replace the count
    schedule by Fast-dLLM's parallel decoding (then `steps` no longer matters: a block takes
    as many calls as it needs, at most one per mask); `cache` reuses the keys and values of
    the positions outside the block between refreshes (once per block, and every
    `refresh_every` calls if set). Presets: `diffutron.sampling.presets.speed_config`.
    """

    max_new_tokens: int = 64
    steps: int = 64
    block_length: int = 32
    temperature: float = 0.1
    remasking: Literal["low_confidence", "random"] = "low_confidence"
    stochastic_transfer: bool = False
    cfg_scale: float = 0.0
    repetition_penalty: float = 1.2
    penalty_scope: Literal["canvas", "generated"] = "canvas"
    early_stop: bool = True
    seed: int | None = None
    truncate: Literal["error", "left"] = "error"
    threshold: float | None = None
    factor: float | None = None
    cache: Literal["none", "prefix", "dual"] = "none"
    refresh_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "steps", "block_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DiffutronError(f"{name} must be an integer >= 1, got {value!r}")
        if self.temperature < 0:
            raise DiffutronError(f"temperature must be >= 0, got {self.temperature}")
        if self.repetition_penalty <= 0:
            raise DiffutronError(
                f"repetition_penalty must be > 0 (1.0 disables it), got {self.repetition_penalty}"
            )
        if self.cfg_scale < 0:
            raise DiffutronError(f"cfg_scale must be >= 0 (0 disables guidance), got {self.cfg_scale}")
        _check_choice("remasking", self.remasking, REMASKING_CHOICES)
        _check_choice("penalty_scope", self.penalty_scope, PENALTY_SCOPES)
        _check_choice("truncate", self.truncate, TRUNCATE_CHOICES)
        _check_choice("cache", self.cache, CACHE_CHOICES)
        self._check_fast_options()

    def _check_fast_options(self) -> None:
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise DiffutronError(
                f"threshold must be in (0, 1] (a confidence; 0.9 is a good start), got {self.threshold}"
            )
        if self.factor is not None and not self.factor > 0:
            raise DiffutronError(f"factor must be > 0 (1.0 is a good start), got {self.factor}")
        if self.threshold is not None and self.factor is not None:
            raise DiffutronError("threshold and factor are two parallel decoding rules: choose one")
        if self.threshold is not None or self.factor is not None:
            rule = "threshold" if self.threshold is not None else "factor"
            if self.remasking != "low_confidence":
                raise DiffutronError(
                    f"{rule} decoding compares model confidences, so it needs remasking='low_confidence'"
                )
            if self.stochastic_transfer:
                raise DiffutronError(
                    f"{rule} decoding replaces the transfer schedule: drop stochastic_transfer"
                )
        if self.refresh_every is not None:
            if isinstance(self.refresh_every, bool) or not isinstance(self.refresh_every, int) \
                    or self.refresh_every < 1:
                raise DiffutronError(f"refresh_every must be an integer >= 1, got {self.refresh_every!r}")
            if self.cache == "none":
                raise DiffutronError("refresh_every sets how often the cache is refreshed: choose a cache too")

    def replace(self, **changes: object) -> GenerationConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DiffutronError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")

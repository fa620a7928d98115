"""Generation settings, with the model card's defaults."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Literal

from diffutron.errors import DiffutronError

REMASKING_CHOICES = ("low_confidence", "random")
PENALTY_SCOPES = ("canvas", "generated")
TRUNCATE_CHOICES = ("error", "left")
CACHE_CHOICES = ("none", "prefix", "dual")
MAX_SEED = 2**64 - 1  # torch generators take seeds of at most 64 bits


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
            self._normalize(name, _integer(name, getattr(self, name), minimum=1))
        for name in ("temperature", "cfg_scale", "repetition_penalty"):
            self._normalize(name, _finite(name, getattr(self, name)))
        for name in ("stochastic_transfer", "early_stop"):
            _check_flag(name, getattr(self, name))
        if self.temperature < 0:
            raise DiffutronError(f"temperature must be >= 0, got {self.temperature}")
        if self.repetition_penalty <= 0:
            raise DiffutronError(f"repetition_penalty must be > 0 (1.0 disables it), got {self.repetition_penalty}")
        if self.cfg_scale < 0:
            raise DiffutronError(f"cfg_scale must be >= 0 (0 disables guidance), got {self.cfg_scale}")
        if self.seed is not None:
            self._normalize(
                "seed", _integer("seed", self.seed, minimum=0, maximum=MAX_SEED, hint=" (None draws a random one)")
            )
        _check_choice("remasking", self.remasking, REMASKING_CHOICES)
        _check_choice("penalty_scope", self.penalty_scope, PENALTY_SCOPES)
        _check_choice("truncate", self.truncate, TRUNCATE_CHOICES)
        _check_choice("cache", self.cache, CACHE_CHOICES)
        self._check_fast_options()

    def _normalize(self, name: str, value: object) -> None:
        """Store a checked value as a plain int or float (a frozen dataclass needs the detour)."""
        object.__setattr__(self, name, value)

    def _check_fast_options(self) -> None:
        for name in ("threshold", "factor"):
            if getattr(self, name) is not None:
                self._normalize(name, _finite(name, getattr(self, name)))
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
                raise DiffutronError(f"{rule} decoding replaces the transfer schedule: drop stochastic_transfer")
        if self.refresh_every is not None:
            self._normalize("refresh_every", _integer("refresh_every", self.refresh_every, minimum=1))
            if self.cache == "none":
                raise DiffutronError("refresh_every sets how often the cache is refreshed: choose a cache too")

    def replace(self, **changes: object) -> GenerationConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def checked_config(config: object, default: GenerationConfig | None = None) -> GenerationConfig:
    """`config`, or `default` (the model card's settings) when it is None; anything else is refused."""
    if config is None:
        return default or GenerationConfig()
    if not isinstance(config, GenerationConfig):
        raise DiffutronError(
            f"config must be a GenerationConfig (GenerationConfig(**options) builds one), got {type(config).__name__}"
        )
    return config


def _integer(name: str, value: object, *, minimum: int, maximum: int | None = None, hint: str = "") -> int:
    """`value` as an int within the bounds (bool is not an integer here), or a clear error."""
    valid = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if valid and minimum <= value and (maximum is None or value <= maximum):
        return int(value)
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    raise DiffutronError(f"{name} must be an integer {bounds}{hint}, got {value!r}")


def _finite(name: str, value: object) -> float:
    """`value` as a float; NaN and infinity would pass every comparison-based check unnoticed."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise DiffutronError(f"{name} must be a finite number, got {value!r}")


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise DiffutronError(f"{name} must be True or False, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DiffutronError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")

"""Generation settings, with the model card's defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from diffutron.errors import DiffutronError

REMASKING_CHOICES = ("low_confidence", "random")
PENALTY_SCOPES = ("canvas", "generated")
TRUNCATE_CHOICES = ("error", "left")


@dataclass(frozen=True)
class GenerationConfig:
    """Options of the masked-diffusion sampler (SPEC section 3).

    Defaults reproduce the DiffutronLM model card: 64 new tokens in 64 steps, blocks of 32,
    temperature 0.1, repetition penalty 1.2, low-confidence remasking.
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

    def replace(self, **changes: object) -> GenerationConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DiffutronError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")

"""The steps from the model's logits to a candidate token per due position, applied in order.

As transformers' logits processors: each processor takes the logits of the due positions (one row
per position) and returns them changed; the sampler runs guidance, then the repetition penalty,
then draws the candidates (`TemperatureDraw`). Only processors that change something are built,
so the model card's neutral values cost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from diffutron.model.tokens import SpecialIds
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.streams import RowStreams


@dataclass(frozen=True)
class DuePositions:
    """The positions decided at one call, rows in order, and the canvas they are decided on."""

    rows: torch.Tensor  # (positions,) each one's row
    columns: torch.Tensor  # (positions,) each one's canvas column
    counts: list[int]  # positions per row, on the host
    canvas: torch.Tensor  # (rows, width)
    given: torch.Tensor  # (rows, width) bool: tokens given in the input (the prompt), not generated
    token_sets: torch.Tensor | None = None  # (positions,) long: each one's allowed-token set, -1 for any token


class LogitsProcessor(Protocol):
    def __call__(self, logits: torch.Tensor, due: DuePositions) -> torch.Tensor:
        """The logits of the due positions, changed."""


class Guidance:
    """Classifier-free guidance: the logits arrive as the conditional rows followed by the
    unconditional ones (given tokens masked) and leave as one row per position."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, logits: torch.Tensor, due: DuePositions) -> torch.Tensor:
        conditional, unconditional = logits.chunk(2)
        return unconditional + (self.scale + 1) * (conditional - unconditional)


class RepetitionPenalty:
    """For each token on the row's canvas (or its generated part) but mask and EOS, a logit > 0 is
    divided by the penalty, others multiplied.

    One gather and one scatter over the canvas's columns, no host sync: a token that appears twice
    writes the same value twice, and the vocabulary-wide logits are never swept.
    """

    def __init__(self, penalty: float, scope: str, ids: SpecialIds) -> None:
        self.penalty = penalty
        self.scope = scope
        self.ids = ids

    def __call__(self, logits: torch.Tensor, due: DuePositions) -> torch.Tensor:
        ids = self.ids
        source = due.canvas if self.scope == "canvas" else torch.where(due.given, ids.mask, due.canvas)
        columns = source[due.rows]  # (positions, width): each position's row of tokens
        values = logits.gather(1, columns)
        penalized = torch.where(values > 0, values / self.penalty, values * self.penalty)
        exempt = (columns == ids.mask) | (columns == ids.eos)
        return logits.scatter_(1, columns, torch.where(exempt, values, penalized))


class TemperatureDraw:
    """The candidates: argmax at temperature 0, else an exact draw from softmax(logits / T) by the
    Gumbel trick in float64 (docs/reference-behaviour.md, section 3), each row from its own stream."""

    def __init__(self, temperature: float, streams: RowStreams) -> None:
        self.temperature = temperature
        self.streams = streams

    def __call__(self, logits: torch.Tensor, due: DuePositions) -> torch.Tensor:
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        noise = self.streams.rand(due.counts, logits.shape[1], dtype=torch.float64)
        return (logits.to(torch.float64).exp() / (-noise.log()) ** self.temperature).argmax(dim=-1)


@dataclass(frozen=True)
class SlotConstraint:
    """Which tokens each position of a canvas may take: `sets` (sets, vocabulary) bool, and
    `positions` (rows, width) long naming each position's set, -1 where any token goes."""

    sets: torch.Tensor
    positions: torch.Tensor


class AllowedTokens:
    """Positions restricted to a set of tokens (structured output's slots) get -inf for every other
    token, so that no rule or draw can pick one; `sets` is (sets, vocabulary) bool, and a position's
    `DuePositions.token_sets` entry names its set (-1: any token)."""

    def __init__(self, sets: torch.Tensor) -> None:
        self.sets = sets

    def __call__(self, logits: torch.Tensor, due: DuePositions) -> torch.Tensor:
        chosen = due.token_sets
        if chosen is None:
            return logits
        allowed = self.sets[chosen.clamp(min=0)] | (chosen < 0)[:, None]
        return logits.masked_fill(~allowed, -math.inf)


def logits_processors(
    config: GenerationConfig, ids: SpecialIds, token_sets: torch.Tensor | None = None
) -> list[LogitsProcessor]:
    """The processors `config` asks for, in the order they apply; `token_sets` restricts slots last."""
    processors: list[LogitsProcessor] = []
    if config.cfg_scale > 0:
        processors.append(Guidance(config.cfg_scale))
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(config.repetition_penalty, config.penalty_scope, ids))
    if token_sets is not None:
        processors.append(AllowedTokens(token_sets))
    return processors

"""The steps from the model's logits to a candidate token per due position, applied in order.

As transformers' logits processors: each processor takes the logits of the due positions (one row
per position) and returns them changed; the sampler runs guidance, the repetition penalty, the
presence and frequency penalties and the logit bias, then draws the candidates (`TemperatureDraw`,
which applies temperature, then top-k, top-p and min-p: transformers' own warpers). Only
processors that change something are built, so the neutral values cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers.generation.logits_process import (
    LogitsProcessor as Warper,
)
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from diffutron.errors import SettingError
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


class OccurrencePenalty:
    """OpenAI's presence and frequency penalties: from each token's logit, `frequency` times the number
    of times the token stands on the row's canvas among the generated tokens (given ones, masks, EOS
    and padding do not count), plus `presence` if it stands there at all. One count per row, no host sync."""

    def __init__(self, presence: float, frequency: float, ids: SpecialIds) -> None:
        self.presence = presence
        self.frequency = frequency
        self.ids = ids

    def __call__(self, logits: torch.Tensor, due: DuePositions) -> torch.Tensor:
        generated = torch.where(due.given, self.ids.mask, due.canvas)
        counts = torch.zeros(generated.shape[0], logits.shape[1], dtype=torch.float32, device=logits.device)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=torch.float32))
        counts[:, [self.ids.mask, *self.ids.stops]] = 0
        penalty = self.frequency * counts + self.presence * counts.clamp(max=1)
        return logits - penalty[due.rows].to(logits.dtype)


class LogitBias:
    """OpenAI's logit_bias: a fixed amount added to chosen tokens' logits at every due position."""

    def __init__(self, biases: Mapping[int, float]) -> None:
        self.tokens = torch.tensor(list(biases), dtype=torch.long)
        self.biases = torch.tensor(list(biases.values()), dtype=torch.float32)

    def __call__(self, logits: torch.Tensor, due: DuePositions) -> torch.Tensor:
        if self.tokens.device != logits.device:
            self.tokens, self.biases = self.tokens.to(logits.device), self.biases.to(logits.device)
        return logits.index_add(1, self.tokens, self.biases.to(logits.dtype).expand(logits.shape[0], -1))


class TemperatureDraw:
    """The candidates: argmax at temperature 0, else an exact draw from softmax(logits / T) by the
    Gumbel trick in float64 (docs/reference-behaviour.md, section 3), each row from its own stream,
    among the tokens the truncation `warpers` (top-k, top-p, min-p, on softmax(logits / T)) keep.
    At temperature 0 the warpers cannot change the argmax and are not run."""

    def __init__(self, temperature: float, streams: RowStreams, warpers: Sequence[Warper] = ()) -> None:
        self.temperature = temperature
        self.streams = streams
        self.warpers = tuple(warpers)

    def __call__(self, logits: torch.Tensor, due: DuePositions) -> torch.Tensor:
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        noise = self.streams.rand(due.counts, logits.shape[1], dtype=torch.float64)
        return (self._truncated(logits.to(torch.float64)).exp() / (-noise.log()) ** self.temperature).argmax(dim=-1)

    def log_distribution(self, logits: torch.Tensor) -> torch.Tensor:
        """(positions, vocab) float32: the log-probabilities the candidates are drawn from, -inf for the
        tokens truncated away; at temperature 0 those of the logits themselves (the argmax is their top)."""
        if self.temperature == 0:
            return logits.float().log_softmax(dim=-1)
        return (self._truncated(logits.to(torch.float64)) / self.temperature).log_softmax(dim=-1).float()

    def _truncated(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` (float64) with the tokens the warpers drop set to -inf."""
        if not self.warpers:
            return logits
        scaled = logits / self.temperature
        for warper in self.warpers:
            scaled = warper(None, scaled)
        return logits.masked_fill(scaled == -math.inf, -math.inf)


def truncation_warpers(config: GenerationConfig) -> list[Warper]:
    """transformers' top-k, top-p and min-p warpers, for the controls `config` sets (in transformers' order)."""
    warpers: list[Warper] = []
    if config.top_k > 0:
        warpers.append(TopKLogitsWarper(config.top_k))
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    if config.min_p > 0.0:
        warpers.append(MinPLogitsWarper(config.min_p))
    return warpers


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
    config: GenerationConfig, ids: SpecialIds, token_sets: torch.Tensor | None = None, vocabulary: int | None = None
) -> list[LogitsProcessor]:
    """The processors `config` asks for, in the order they apply; `token_sets` restricts slots last;
    `vocabulary`: the logits' width, which the logit bias's tokens must be within (None: not checked)."""
    processors: list[LogitsProcessor] = []
    if config.cfg_scale > 0:
        processors.append(Guidance(config.cfg_scale))
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(config.repetition_penalty, config.penalty_scope, ids))
    if config.presence_penalty != 0.0 or config.frequency_penalty != 0.0:
        processors.append(OccurrencePenalty(config.presence_penalty, config.frequency_penalty, ids))
    if config.logit_bias is not None:
        outside = [token for token in config.logit_bias if vocabulary is not None and token >= vocabulary]
        if outside:
            raise SettingError(
                f"logit_bias names token {outside[0]}, outside the vocabulary of {vocabulary} tokens", "logit_bias"
            )
        processors.append(LogitBias(config.logit_bias))
    if token_sets is not None:
        processors.append(AllowedTokens(token_sets))
    return processors

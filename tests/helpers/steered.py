"""Masked LMs whose logits a test chooses: one fixed distribution, or a model with tokens forced in places.

They are not split into encoder and output layer (no `head`), so the sampler runs them through
their plain forward pass; everything after the logits is the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace

import torch
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput


class FixedLogits(nn.Module):
    """Every position of every row gets the same logits, whatever the input."""

    def __init__(self, logits: torch.Tensor, max_positions: int = 4096) -> None:
        super().__init__()
        self.fixed = nn.Parameter(logits.float(), requires_grad=False)
        self.config = SimpleNamespace(max_position_embeddings=max_positions)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> MaskedLMOutput:
        return MaskedLMOutput(logits=self.fixed.expand(*input_ids.shape, -1).clone())


FAVOURED = {10: 2.0, 11: 1.5, 12: 1.0, 13: 0.5, 14: 0.0, 15: -0.5, 16: -1.0, 17: -1.5}


def favoured_logits(vocabulary: int, favoured: Mapping[int, float] = FAVOURED) -> FixedLogits:
    """Fixed logits: `favoured`'s on its tokens and -30 on every other one (the mask token included)."""
    logits = torch.full((vocabulary,), -30.0)
    for token, logit in favoured.items():
        logits[token] = logit
    return FixedLogits(logits)


class ForcedTokens(nn.Module):
    """`model` with the logit of a chosen token raised by `strength` at chosen (row, position)s.

    A raise of 12 on the tiny models gives that token a probability near 0.99, so the position
    is among the first committed and gets that token; rows are canvas rows.
    """

    def __init__(self, model: nn.Module, forced: Mapping[tuple[int, int], int], strength: float = 12.0) -> None:
        super().__init__()
        self.base = model
        self.forced = dict(forced)
        self.strength = strength
        self.config = model.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> MaskedLMOutput:
        logits = self.base(input_ids=input_ids, attention_mask=attention_mask).logits.clone()
        for (row, position), token in self.forced.items():
            logits[row, position, token] += self.strength
        return MaskedLMOutput(logits=logits)

"""Block caching for ModernBERT (Fast-dLLM's prefix and dual cache), on the model's own modules.

Inside a block only the block's tokens change, so the keys and values of the other positions
move little from one step to the next. A refresh runs the whole canvas and keeps every layer's
keys and values (after RoPE); the steps until the next refresh run the encoder only over the
active positions -- the block (`dual`) or everything from the block on (`prefix`), led by any
mask of an earlier block still open -- whose
queries attend to the cached keys and values of the other positions and the fresh ones of
their own.

The forward pass is `ModernBertModel.forward` itself (embeddings, layers, RoPE, final norm),
called with the active positions' ids and position ids and a prepared mask per attention type.
Only the attention kernel is swapped, through transformers' `AttentionInterface`, for one that
writes the fresh keys and values into the cache and attends over the whole canvas.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.modernbert.modeling_modernbert import ModernBertModel, eager_attention_forward

from diffutron.errors import DiffutronError
from diffutron.model.parts import MaskedLMParts

CacheMode = Literal["prefix", "dual"]
_ATTENTION_NAME = "diffutron_block_cache"


class BlockCache:
    """Hidden states of a ModernBERT canvas, with each row's keys and values cached between its refreshes.

    `hidden(input_ids, attention_mask, block_positions, refresh)` returns (rows, width, hidden)
    final-norm hidden states. A row with `refresh` runs its whole canvas and stores its keys and
    values, and all its positions are exact; the other rows compute only their active positions
    (the rest are zeros and must not be used). `block_positions` are the positions to predict, in
    non-decreasing order per row: the row's block, led by the earlier masks still open (a row may
    repeat a position). Rows refresh at their own calls, so rows at different blocks share a call.

    The stored keys and values follow the caller's rows: rows added at the end get theirs at
    their first (refreshing) call, `keep` drops those of rows taken out, and a wider or narrower
    canvas pads (with masked-out padding) or cuts them.
    """

    def __init__(self, model: nn.Module, mode: CacheMode) -> None:
        self.encoder = modernbert_encoder(model, f"cache={mode!r}")
        self.mode = mode
        config = self.encoder.config
        self.window = int(config.sliding_window)  # |query - key| <= window on local layers
        implementation = config._attn_implementation
        self.inner = ALL_ATTENTION_FUNCTIONS["sdpa"] if implementation != "eager" else eager_attention_forward
        self.additive_mask = implementation == "eager"
        # per layer: (copies, rows, heads, width, head dim); CFG makes two copies of every row
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.shape = (1, 0, 0)  # copies, rows, width of the current call
        self.active: torch.Tensor | None = None  # (rows, active) positions of a cached pass; None in a refresh
        self.refreshing: torch.Tensor | None = None  # the rows a refresh pass stores

    @torch.no_grad()
    def hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        block_positions: torch.Tensor,
        refresh: Sequence[bool],
    ) -> torch.Tensor:
        rows = len(refresh)
        copies, width = input_ids.shape[0] // rows, input_ids.shape[1]
        self._fit(copies, rows, width)
        refreshed = [row for row, flag in enumerate(refresh) if flag]
        if len(refreshed) == rows:
            return self._refresh_pass(input_ids, attention_mask, torch.arange(rows, device=input_ids.device))
        # every row runs the cached pass (cheap, and it updates the stored tensors in place); refreshed
        # rows then run their whole canvas, which replaces what the cached pass gave them
        states = self._cached_pass(input_ids, attention_mask, block_positions)
        if refreshed:
            index = torch.tensor(refreshed, dtype=torch.long, device=input_ids.device)
            copied = torch.cat([index + copy * rows for copy in range(copies)])
            mask = None if attention_mask is None else attention_mask[copied]
            states[copied] = self._refresh_pass(input_ids[copied], mask, index)
        return states

    def keep(self, rows: Sequence[int]) -> None:
        """Drop the stored keys and values of every row not in `rows` (the caller took them out)."""
        for stored in (self.keys, self.values):
            for layer, tensor in stored.items():
                stored[layer] = tensor[:, list(rows)]

    def join(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values over the whole canvas: stored on a refresh, updated in place otherwise."""
        copies, rows, width = self.shape
        if layer not in self.keys:
            shape = (copies, rows, key.shape[1], width, key.shape[3])
            self.keys[layer], self.values[layer] = key.new_zeros(shape), value.new_zeros(shape)
        if self.active is None:
            assert self.refreshing is not None
            shape = (copies, len(self.refreshing), *key.shape[1:])
            self.keys[layer][:, self.refreshing] = key.view(shape)
            self.values[layer][:, self.refreshing] = value.view(shape)
            return key, value
        index = self.active[:, None, :, None].expand_as(key)
        keys, values = (
            stored[layer].view(copies * rows, key.shape[1], width, -1) for stored in (self.keys, self.values)
        )
        return keys.scatter_(2, index, key), values.scatter_(2, index, value)

    def _fit(self, copies: int, rows: int, width: int) -> None:
        """Stored tensors for `rows` rows (new ones at the end, zeros until they refresh) and `width` columns."""
        self.shape = (copies, rows, width)
        for stored in (self.keys, self.values):
            for layer, tensor in stored.items():
                if tensor.shape[1] < rows:
                    tensor = torch.cat([tensor, tensor.new_zeros(copies, rows - tensor.shape[1], *tensor.shape[2:])], 1)
                if tensor.shape[3] != width:
                    tensor = tensor[:, :, :, :width]
                    missing = width - tensor.shape[3]
                    if missing:
                        padding = tensor.new_zeros(*tensor.shape[:3], missing, tensor.shape[4])
                        tensor = torch.cat([tensor, padding], dim=3)
                stored[layer] = tensor

    def _refresh_pass(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, rows: torch.Tensor
    ) -> torch.Tensor:
        """The whole canvas of `rows` (and their CFG copies, in `input_ids`), storing their keys and values."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand(input_ids.shape[0], -1)
        self.active, self.refreshing = None, rows
        return self._run(input_ids, positions, attention_mask)

    def _cached_pass(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, block_positions: torch.Tensor
    ) -> torch.Tensor:
        rows, width = input_ids.shape
        positions = self._active_positions(block_positions, rows, width)
        self.active, self.refreshing = positions, None
        states = self._run(input_ids.gather(1, positions), positions, attention_mask)
        full = states.new_zeros(rows, width, states.shape[-1])
        return full.scatter_(1, positions[..., None].expand_as(states), states)

    def _run(
        self, input_ids: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        masks = self._masks(positions, attention_mask, self.shape[2])
        with _attention_implementation(self.encoder, _ATTENTION_NAME):
            return self.encoder(
                input_ids=input_ids, position_ids=positions, attention_mask=masks, block_cache=self
            ).last_hidden_state

    def _active_positions(self, block_positions: torch.Tensor, rows: int, width: int) -> torch.Tensor:
        """The positions recomputed between refreshes; CFG doubles the rows of the batch.

        `prefix`: each row from its own first position to the end of the canvas; rows that start
        later repeat their last position (same query, same result), so that every row
        is computed as it would be alone.
        """
        block_positions = block_positions.repeat(rows // block_positions.shape[0], 1)
        if self.mode == "dual":
            return block_positions
        start = block_positions[:, :1]
        span = torch.arange(width - int(start.min()), device=start.device)
        return (start + span).clamp(max=width - 1)

    def _masks(
        self, positions: torch.Tensor, attention_mask: torch.Tensor | None, width: int
    ) -> dict[str, torch.Tensor]:
        """(rows, 1, queries, width) masks for global and local layers, as ModernBERT builds them.

        A key is visible if it is not padding (and, on local layers, within the window); every
        query also sees itself, so that a padding query never has an empty row (NaN in SDPA).
        """
        keys = torch.arange(width, device=positions.device)
        itself = positions[:, :, None] == keys
        visible = (
            torch.ones_like(itself) if attention_mask is None else attention_mask.bool()[:, None, :].expand_as(itself)
        )
        near = (positions[:, :, None] - keys).abs() <= self.window
        masks = {"full_attention": visible | itself, "sliding_attention": (visible & near) | itself}
        if self.additive_mask:
            lowest = torch.finfo(self.encoder.dtype).min
            masks = {
                name: torch.zeros(mask.shape, dtype=self.encoder.dtype, device=mask.device).masked_fill_(~mask, lowest)
                for name, mask in masks.items()
            }
        return {name: mask[:, None] for name, mask in masks.items()}


def modernbert_encoder(model: nn.Module, purpose: str) -> ModernBertModel:
    """The `ModernBertModel` inside a masked LM (peft wrappers unwrapped), or a clear error."""
    encoder = getattr(MaskedLMParts(model).model, "model", None)
    if not isinstance(encoder, ModernBertModel):
        raise DiffutronError(
            f"{purpose} works with ModernBERT models only (Diffutron's architecture); this model is "
            f"a {type(model).__name__}. Use cache='none' (--cache none) for it."
        )
    return encoder


def _cached_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    block_cache: BlockCache,
    scaling: float,
    dropout: float = 0.0,
    **_: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attention kernel of a cached pass: fresh keys/values joined with the cached ones.

    The window of local layers is in the mask (ModernBERT's `sliding_window` argument is meant
    for flash attention over aligned queries and keys, which these are not).
    """
    keys, values = block_cache.join(module.layer_idx, key, value)
    return block_cache.inner(module, query, keys, values, attention_mask, scaling=scaling, dropout=dropout)


AttentionInterface.register(_ATTENTION_NAME, _cached_attention)


@contextmanager
def _attention_implementation(encoder: ModernBertModel, name: str) -> Iterator[None]:
    """Route the encoder's attention layers to `name` for one call (they read it from the config)."""
    config = encoder.config
    original = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = original

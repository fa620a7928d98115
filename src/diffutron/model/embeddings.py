"""Text embeddings from a masked LM: its encoder's last hidden states, mean-pooled over the input's
tokens and L2-normalised. They are the model's own states, not those of a trained retrieval model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from diffutron.errors import DiffutronError
from diffutron.model.parts import MaskedLMParts

EMBED_BATCH = 32  # inputs per encoder pass


@torch.no_grad()
def embed_ids(
    model: nn.Module,
    inputs: Sequence[Sequence[int]],
    pad: int,
    batch_size: int = EMBED_BATCH,
    after_pass: Callable[[], None] | None = None,
) -> torch.Tensor:
    """(inputs, hidden) float32 on the CPU, one unit vector per input; inputs of similar length share a
    pass. `after_pass` is called after each encoder pass (a server's heartbeat)."""
    parts = MaskedLMParts(model)
    if not parts.split:
        raise DiffutronError(f"embeddings need a ModernBERT- or BERT-like masked LM, not a {type(model).__name__}")
    device = next(model.parameters()).device
    order = sorted(range(len(inputs)), key=lambda index: len(inputs[index]))
    pieces = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(inputs[index]) for index in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long, device=device)
        attention = torch.zeros((len(chunk), width), dtype=torch.long, device=device)
        for row, index in enumerate(chunk):
            ids[row, : len(inputs[index])] = torch.as_tensor(list(inputs[index]), dtype=torch.long)
            attention[row, : len(inputs[index])] = 1
        hidden = parts.hidden(ids, attention if not bool(attention.all()) else None).float()
        pooled = (hidden * attention[..., None]).sum(dim=1) / attention.sum(dim=1, keepdim=True)
        pieces.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        if after_pass is not None:
            after_pass()
    return torch.cat(pieces)[torch.tensor(order).argsort()]

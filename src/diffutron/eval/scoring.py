"""Cross-entropy at chosen positions of a padded batch, with logits computed only there.

Shared by the continuation likelihood and the MLM perplexity: both mask a few positions
of many sequences, and with a 256k vocabulary the output layer over every position would
cost more than the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from diffutron.model.parts import MaskedLMParts

# positions whose logits are computed at once: bounds the (positions x vocabulary) buffer
HEAD_CHUNK = 256


def pad_right(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ids, attention mask) with right padding; no mask when every row has the same length."""
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    width = int(lengths.max())
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.as_tensor(list(sequence), dtype=torch.long)
    if bool((lengths == width).all()):
        return ids.to(device), None
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return ids.to(device), mask.to(device)


@torch.no_grad()
def cross_entropy_at(
    parts: MaskedLMParts,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    rows: Sequence[int],
    positions: Sequence[int],
    targets: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per selected (row, position): float32 cross-entropy of `targets`, and whether the
    target is the argmax. Logits are NOT shifted: position i predicts token i."""
    device = input_ids.device
    hidden = parts.hidden(input_ids, attention_mask)
    selected = hidden[torch.tensor(rows, device=device), torch.tensor(positions, device=device)]
    target_tensor = torch.tensor(targets, dtype=torch.long, device=device)
    losses, hits = [], []
    for start in range(0, len(targets), HEAD_CHUNK):
        logits = parts.logits(selected[start : start + HEAD_CHUNK])
        chunk_targets = target_tensor[start : start + HEAD_CHUNK]
        chosen = logits.gather(1, chunk_targets[:, None]).squeeze(1)
        losses.append(torch.logsumexp(logits, dim=-1) - chosen)
        hits.append(logits.argmax(dim=-1) == chunk_targets)
    return torch.cat(losses), torch.cat(hits)

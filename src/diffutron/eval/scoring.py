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
    """Per (row, position, target) entry: float32 cross-entropy of the target, and whether it
    is the argmax. A (row, position) may repeat with other targets (the options of a
    multiple-choice question often share an input): its logits are computed once.
    Logits are NOT shifted: position i predicts token i."""
    device = input_ids.device
    hidden = parts.hidden(input_ids, attention_mask)
    width = input_ids.shape[1]
    places, inverse = torch.unique(torch.tensor(rows) * width + torch.tensor(positions), return_inverse=True)
    selected = hidden[(places // width).to(device), (places % width).to(device)]
    inverse = inverse.to(device)
    target_tensor = torch.tensor(targets, dtype=torch.long, device=device)
    losses = torch.empty(len(targets), dtype=torch.float32, device=device)
    hits = torch.empty(len(targets), dtype=torch.bool, device=device)
    for start in range(0, len(places), HEAD_CHUNK):
        logits = parts.logits(selected[start : start + HEAD_CHUNK], pad=False)
        entries = ((inverse >= start) & (inverse < start + HEAD_CHUNK)).nonzero().squeeze(1)
        local, wanted = inverse[entries] - start, target_tensor[entries]
        losses[entries] = torch.logsumexp(logits, dim=-1)[local] - logits[local, wanted]
        hits[entries] = logits.argmax(dim=-1)[local] == wanted
    return losses, hits

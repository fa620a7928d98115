"""The MDLM continuation bound of docs/reference-behaviour.md, section 7, computed the slow, direct way."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch


@torch.no_grad()
def exact_bound(model, mask_id: int, context: Sequence[int], continuation: Sequence[int]) -> float:
    """-E_m E_S[(L/m) sum CE]: every mask set, one unbatched forward pass each."""
    length, total = len(continuation), 0.0
    for size in range(1, length + 1):
        for subset in itertools.combinations(range(length), size):
            ids = list(context) + list(continuation)
            for offset in subset:
                ids[len(context) + offset] = mask_id
            logprobs = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
            cross_entropy = -sum(float(logprobs[len(context) + o, continuation[o]]) for o in subset)
            total += cross_entropy / (size * math.comb(length, size))
    return -total

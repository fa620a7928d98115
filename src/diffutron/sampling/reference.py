"""The reference sampler: a plain, slow transcription of the model card's generation loop.

Deliberately written like the public code: full-canvas logits, penalty, softmax and
confidence at every step, one loop per row. It is the ground truth that `diffutron.sample`
is tested against (docs/reference-behaviour.md, section 3 describes the loop), so it imports
nothing from the rest of the package: a bug in the fast sampler cannot leak into its oracle.
Its randomness (temperature > 0, random remasking, stochastic transfer) comes from torch's
global generator: seed it with `torch.manual_seed`; with those options the fast sampler draws
differently, so only the distributions of the two can be compared.
Use `diffutron.sample` for real work; this one is kept for tests and benchmarks.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def reference_reveal_fraction(j: int, steps: int) -> float:
    """1 - (1 - alpha(s)) / (1 - alpha(t)) of step j, with s, t and the ratio in float32."""
    t = torch.tensor((steps - j) / steps, dtype=torch.float32)
    s = torch.tensor((steps - j - 1) / steps, dtype=torch.float32)
    alpha_t, alpha_s = 1 - t, 1 - s
    return float(1 - (1 - alpha_s) / (1 - alpha_t))


def reference_transfer_counts(mask_num: int, steps: int) -> list[int]:
    counts = []
    for j in range(steps):
        reverse_transfer = torch.tensor(reference_reveal_fraction(j, steps), dtype=torch.float32)
        n = torch.round(torch.tensor(mask_num, dtype=torch.float64) * reverse_transfer)
        n = int(torch.clamp(n, 0, mask_num))
        counts.append(n)
        mask_num -= n
        if mask_num == 0:
            break
    return [c for c in counts if c > 0]


def reference_stochastic_counts(mask_num: int, steps: int) -> list[int]:
    """count_j ~ Binomial(left, fraction_j) for every step j (zeros kept), from the global generator."""
    counts = []
    for j in range(steps):
        fraction = torch.tensor(reference_reveal_fraction(j, steps), dtype=torch.float64)
        n = int(torch.binomial(torch.tensor(float(mask_num), dtype=torch.float64), fraction))
        n = min(n, mask_num)
        counts.append(n)
        mask_num -= n
    return counts


@torch.no_grad()
def _block_schedule(block_masks, steps_per_block, stochastic_transfer):
    """Each row's reveal counts per step of one block, from the row's masks in the block."""
    if stochastic_transfer:
        drawn = [reference_stochastic_counts(m, steps_per_block) for m in block_masks]
        kept = [i for i in range(steps_per_block) if any(counts[i] > 0 for counts in drawn)]
        return [[counts[i] for i in kept] for counts in drawn]  # a step where no row reveals: no call
    return [reference_transfer_counts(m, steps_per_block) for m in block_masks]


def reference_sample(
    model,
    tokenizer,
    prompts,
    *,
    max_new_tokens,
    steps,
    block_length,
    temperature=0.0,
    cfg_scale=0.0,
    repetition_penalty=1.0,
    remasking="low_confidence",
    stochastic_transfer=False,
    penalty_scope="canvas",
):
    mask_id, eos_id = tokenizer.mask_token_id, tokenizer.eos_token_id
    B = len(prompts)
    lens = [len(p) for p in prompts]
    T = max(lens) + max_new_tokens
    x = torch.full((B, T), eos_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        x[i, : lens[i]] = torch.tensor(p)
        x[i, lens[i] : lens[i] + max_new_tokens] = mask_id
    attention_mask = (x != eos_id).long() if B > 1 else None
    unmasked_index = (x != mask_id) & (x != eos_id)

    num_blocks = math.ceil(max_new_tokens / block_length)
    steps_per_block = math.ceil(steps / num_blocks)
    for b in range(num_blocks):
        block_masks = []
        for j in range(B):
            start = lens[j] + b * block_length
            end = min(start + block_length, lens[j] + max_new_tokens)
            block_masks.append(int((x[j, start:end] == mask_id).sum()))
        schedule = _block_schedule(block_masks, steps_per_block, stochastic_transfer)
        for i in range(len(schedule[0])):
            mask_index = x == mask_id
            if cfg_scale > 0.0:
                un_x = x.clone()
                un_x[unmasked_index] = mask_id
                x_ = torch.cat([x, un_x], dim=0)
                am = torch.cat([attention_mask, attention_mask]) if attention_mask is not None else None
                logits = model(x_, attention_mask=am).logits
                logits, un_logits = torch.chunk(logits, 2, dim=0)
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            else:
                logits = model(x, attention_mask=attention_mask).logits
            if repetition_penalty != 1.0:
                for j in range(B):
                    counted = (x[j] != mask_id) & (x[j] != eos_id)
                    if penalty_scope == "generated":
                        counted &= ~unmasked_index[j]
                    present = torch.unique(x[j][counted])
                    score = logits[j][:, present]
                    score = torch.where(score > 0, score / repetition_penalty, score * repetition_penalty)
                    logits[j][:, present] = score
            if temperature > 0:
                lg = logits.to(torch.float64)
                noise = torch.rand_like(lg)
                x0 = torch.argmax(lg.exp() / (-torch.log(noise)) ** temperature, dim=-1)
            else:
                x0 = torch.argmax(logits, dim=-1)
            if remasking == "low_confidence":
                p = torch.softmax(logits, dim=-1)
                x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)
            else:
                x0_p = torch.rand(x0.shape)
            for j in range(B):
                x0_p[j, lens[j] + (b + 1) * block_length :] = -np.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, torch.tensor(-np.inf))
            transfer_index = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(B):
                k = min(schedule[j][i], int(mask_index[j].sum()))
                _, select_index = torch.topk(confidence[j], k=k)
                transfer_index[j, select_index] = True
            x[transfer_index] = x0[transfer_index]
    return x

"""The paper's continual pre-training step on one GPU: peak memory of the old and the new loss path,
computed from tensor sizes on the CPU.

The recipe (batch 64 x 512 on mmBERT-base, bf16 mixed precision, LoRA r=256 on Wqkv/Wo/Wi with
dropout 0.1, paged 8-bit AdamW) does not fit this machine, and no GPU was lent. So the step's
tensors are counted instead: a dispatch mode records every tensor storage an operation creates
and when it is freed, during forward, loss and backward of the real model code under CPU bf16
autocast (the same dtypes CUDA autocast gives the linear layers) and with dropout keeping one-byte
masks as CUDA's fused dropout does (the CPU's keeps float32 ones), at batch 3 and 4 x 512 with every
row masked at rate 1/2 (the recipe's mean: t ~ U[0, 1)). Beyond the first full chunk of the masked
loss (256 rows), everything that grows with the batch grows linearly (activations, logits, their
gradients), so the peak at 64 rows is the line through the two measured peaks (which include the
LoRA gradients, created in backward), plus what exists before the step: the float32 weights and the
8-bit optimizer state (two one-byte states per trainable parameter).

Not counted: the CUDA caching allocator's rounding and fragmentation, cuBLAS / attention kernel
workspaces, the CUDA context (about 0.5-1 GiB). `tools/gpu_check.py` measures the real
figure on a GPU.

    python benchmarks/estimate_recipe_memory.py [--threads 2] [--rows 3 4] [--target-rows 64]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from diffutron.training.config import LoraSettings
from diffutron.training.models import apply_lora, count_parameters
from measure import LiveTensorBytes
from workloads import MMBERT_BASE, mdlm_training_steps, random_masked_lm

LENGTH = 512
MASK_ID = 4


def fused_dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """Dropout as CUDA runs it: `native_dropout`, which keeps a one-byte mask for backward."""
    if not training or p == 0.0:
        return input
    return torch.native_dropout(input, p, True)[0]


def step_peak(step: Callable[[], float]) -> int:
    """Peak bytes of the tensors one step creates (the model's own weights excluded)."""
    with LiveTensorBytes() as tracker:
        step()
    return tracker.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, nargs=2, default=[3, 4])
    parser.add_argument("--target-rows", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.nn.functional.dropout = fused_dropout  # nn.Dropout (LoRA's) calls it through the module

    model = apply_lora(random_masked_lm(MMBERT_BASE), LoraSettings(r=256, alpha=256, dropout=0.1)).train()
    trainable, total = count_parameters(model)
    fixed = 4 * total + 2 * trainable  # float32 weights; 8-bit AdamW: two one-byte states per trainable parameter
    peaks: dict[str, list[int]] = {"before": [], "after": []}
    generator = torch.Generator().manual_seed(0)
    for rows in args.rows:
        ids = torch.randint(5, MMBERT_BASE["vocab_size"], (rows, LENGTH), generator=generator)
        steps = mdlm_training_steps(model, ids, MASK_ID, autocast_dtype=torch.bfloat16, mask_rate=0.5)
        for path in peaks:
            peaks[path].append(step_peak(steps[path]))
            print(f"measured: {path} at {rows} x {LENGTH}: {peaks[path][-1] / 2**30:.2f} GiB", flush=True)

    print(
        f"\nmmBERT-base, LoRA r=256 ({trainable:,} trainable of {total:,}), bf16 autocast, half the positions "
        f"masked; before the step (float32 weights, 8-bit AdamW state): {fixed / 2**30:.2f} GiB"
    )
    print(f"{'path':<8}{'per row GiB':>13}{f'step at {args.target_rows} x {LENGTH} GiB':>26}{'peak GiB':>10}")
    estimates = {}
    for path, (small, large) in peaks.items():
        per_row = (large - small) / (args.rows[1] - args.rows[0])
        step = small + per_row * (args.target_rows - args.rows[0])
        estimates[path] = step + fixed
        print(f"{path:<8}{per_row / 2**30:>13.3f}{step / 2**30:>26.1f}{estimates[path] / 2**30:>10.1f}")
    print(f"after / before: {estimates['after'] / estimates['before']:.2f}x")


if __name__ == "__main__":
    main()

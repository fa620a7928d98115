"""Training throughput of the embedded model's shape on CPU: v2's training path vs v3's, side by side.

v2 was trained when the MDLM loss read the full (batch x length x vocabulary) logits
(`MDLMObjective.loss`); the Trainer now evaluates the output layer at the masked positions only
(`MaskedOutputLoss`). Both paths train their own copy of the same from-scratch ModernBERT (the shape
of `configs/embedded/pretrain.yaml` unless overridden) with the same AdamW and the same batches of
random Turkish-vocabulary tokens, and their steps (masking, forward, loss, backward, clipping,
optimizer step) are interleaved one by one in one process, so that a change in machine load hits
both alike. Optional variants: bf16 autocast and torch.compile of the masked path. Reported:
tokens per second of each path (the first steps not timed) and the ratio to v2's, by the wall clock
and by the process's CPU time (the cost of a step, whatever else the machine runs).

    python benchmarks/bench_embedded_training.py [--threads 2] [--steps 20] [--batch-size 32] [--length 128]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from transformers import ModernBertConfig, ModernBertForMaskedLM

from diffutron.training.objective import MDLMObjective
from diffutron.training.output_loss import MaskedOutputLoss

WARMUP_STEPS = 3
MASK_ID = 4
RECIPE = Path(__file__).resolve().parent.parent / "configs" / "embedded" / "pretrain.yaml"


def embedded_shape(vocabulary: int, hidden: int | None, layers: int | None) -> dict:
    shape = dict(yaml.safe_load(RECIPE.read_text())["model"]["from_scratch"])
    if hidden is not None:
        shape.update(hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=max(1, hidden // 64))
    if layers is not None:
        shape["num_hidden_layers"] = layers
    return {**shape, "vocab_size": vocabulary, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}


def fresh_model(shape: dict) -> ModernBertForMaskedLM:
    torch.manual_seed(0)
    return ModernBertForMaskedLM(ModernBertConfig(**shape)).train()


class Path_:
    """One training path: its own model and optimizer, a step function and its timing."""

    def __init__(self, name: str, shape: dict, masked: bool, autocast: bool, compiled: bool) -> None:
        self.name = name
        self.model = fresh_model(shape)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.01)
        self.output_loss = MaskedOutputLoss(self.model) if masked else None
        self.forward: Callable = torch.compile(self.model, dynamic=False) if compiled else self.model
        self.autocast = autocast
        self.tokens = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # this process's CPU time: what the step costs, whatever else runs on the machine

    def step(self, ids: torch.Tensor, objective: MDLMObjective, noise: torch.Generator) -> float:
        labels = ids
        t = objective.sample_times(ids.shape[0], ids.device, noise)
        noisy, masked = objective.corrupt(ids, labels, t, MASK_ID, noise)
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with amp:
            if self.output_loss is None:
                logits = self.forward(input_ids=noisy).logits
                loss = objective.loss(logits, labels, masked, t)
            else:
                coefficients = objective.coefficients(labels, masked, t)
                with self.output_loss.scoring(masked, labels, coefficients):
                    loss = self.forward(input_ids=noisy).logits
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--vocabulary", type=int, default=8000)
    parser.add_argument("--hidden", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--layers", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--variants", nargs="*", default=[], choices=["bf16", "compile"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = embedded_shape(args.vocabulary, args.hidden, args.layers)
    paths = [
        Path_("v2: full logits", shape, masked=False, autocast=False, compiled=False),
        Path_("v3: masked rows only", shape, masked=True, autocast=False, compiled=False),
    ]
    if "bf16" in args.variants:
        paths.append(Path_("masked + bf16 autocast", shape, masked=True, autocast=True, compiled=False))
    if "compile" in args.variants:
        paths.append(Path_("masked + torch.compile", shape, masked=True, autocast=False, compiled=True))
    objective = MDLMObjective()
    data = torch.Generator().manual_seed(0)
    noises = {path.name: torch.Generator().manual_seed(1) for path in paths}
    for step in range(args.steps):
        ids = torch.randint(5, args.vocabulary, (args.batch_size, args.length), generator=data)
        for path in paths if step % 2 == 0 else reversed(paths):
            start, cpu_start = time.perf_counter(), time.process_time()
            path.step(ids, objective, noises[path.name])
            if step >= WARMUP_STEPS:
                path.seconds += time.perf_counter() - start
                path.cpu_seconds += time.process_time() - cpu_start
                path.tokens += ids.numel()
    parameters = sum(p.numel() for p in paths[0].model.parameters())
    print(
        f"torch threads {args.threads}; {args.steps} interleaved steps per path (first {WARMUP_STEPS} not timed) of "
        f"batch {args.batch_size} x {args.length}; ModernBERT hidden {shape['hidden_size']} x "
        f"{shape['num_hidden_layers']} layers, vocabulary {args.vocabulary}, {parameters:,} parameters; float32 weights"
    )
    timed = args.steps - WARMUP_STEPS
    baseline, cpu_baseline = paths[0].tokens / paths[0].seconds, paths[0].tokens / paths[0].cpu_seconds
    print(f"{'path':<26}{'s/step':>8}{'tokens/s':>10}{'vs v2':>8}{'CPU s/step':>12}{'tokens/CPU s':>14}{'vs v2':>8}")
    for path in paths:
        rate, cpu_rate = path.tokens / path.seconds, path.tokens / path.cpu_seconds
        print(
            f"{path.name:<26}{path.seconds / timed:>8.3f}{rate:>10.0f}{rate / baseline:>7.2f}x"
            f"{path.cpu_seconds / timed:>12.3f}{cpu_rate:>14.0f}{cpu_rate / cpu_baseline:>7.2f}x"
        )


if __name__ == "__main__":
    main()

"""Training-step memory and time of the MDLM loss: full logits (before) against the masked-only output layer.

mmBERT-base's shape with random weights (256k vocabulary, 22 layers), LoRA r=256 on Wqkv, Wo and
Wi (the paper's continual pre-training), AdamW, float32 on the CPU. One training step is forward,
loss, backward and optimizer step on a batch of random token ids, masked by the MDLM objective
with a fixed noise seed (both paths see the same masks).

- before: the model computes logits at every position; `MDLMObjective.loss` selects the masked rows,
  copies them to float32 and takes the cross-entropy (the code before the masked-only loss).
- after: `MaskedOutputLoss` (what `diffutron train` uses): the output layer runs at the masked
  positions only, in chunks, the float32 cross-entropy and its gradients formed chunk by chunk.

Memory is measured in a fresh process per path, after one unmeasured step (so the optimizer's state
exists): the peak bytes of the tensors the measured steps allocate (counted operation by operation,
`measure.LiveTensorBytes`: exact, unlike a resident size, which the allocator's caching blurs), up
to the end of backward (what the loss path changes) and over the whole step (the optimizer update
included), and the process's peak resident set size (the kernel's high-water mark, reset through
/proc/self/clear_refs). Time is measured in one more process that alternates the two paths step by
step (so machine load hits both alike); the fastest step of each path is reported (the one least
disturbed by other work on the machine).

    python benchmarks/bench_loss_memory.py [--threads 2] [--batch 4] [--length 512] [--steps 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from diffutron.training.config import LoraSettings
from diffutron.training.models import apply_lora
from measure import LiveTensorBytes, peak_memory, reset_peak_memory
from workloads import MMBERT_BASE, mdlm_training_steps, mmbert_shaped_model

MASK_ID = 4
PATHS = ("before", "after")


def training_setup(args: argparse.Namespace, on_backward: Callable[[], None] | None = None) -> dict[str, Callable]:
    """One training step function per path on the LoRA model, with AdamW."""
    lora = LoraSettings(r=args.lora_r, alpha=args.lora_r, dropout=0.1)
    model = apply_lora(mmbert_shaped_model(quick_init=True), lora).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, MMBERT_BASE["vocab_size"], (args.batch, args.length), generator=generator)
    return mdlm_training_steps(model, ids, MASK_ID, optimizer=optimizer, on_backward=on_backward)


def worker_memory(args: argparse.Namespace) -> dict:
    """Memory of the measured steps, after one unmeasured step has created the optimizer's state
    (which both paths share): the peak of the tensors the steps allocate, up to the end of backward
    (the part the loss path changes) and over the whole step, and the process's peak resident size."""
    cpu = torch.device("cpu")
    tracker: list[LiveTensorBytes] = []
    backward_peaks: list[int] = []
    steps = training_setup(args, on_backward=lambda: backward_peaks.extend(t.peak for t in tracker))
    steps[args.path]()
    reset_peak_memory(cpu)
    with LiveTensorBytes() as counter:
        tracker.append(counter)
        losses = [steps[args.path]() for _ in range(args.steps)]
    return {
        "backward_peak": max(backward_peaks),
        "step_peak": counter.peak,
        "peak_rss": peak_memory(cpu),
        "losses": losses,
        "masked": int(steps["masked"]()),
    }


def worker_time(args: argparse.Namespace) -> dict:
    steps = training_setup(args)
    seconds: dict[str, list[float]] = {path: [] for path in PATHS}
    for path in PATHS:  # warm-up
        steps[path]()
    for step in range(args.steps):
        for path in PATHS if step % 2 == 0 else reversed(PATHS):
            start = time.perf_counter()
            steps[path]()
            seconds[path].append(time.perf_counter() - start)
    return {path: min(values) for path, values in seconds.items()}


def run_worker(kind: str, args: argparse.Namespace, path: str = "") -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--path",
        path,
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
        "--length",
        str(args.length),
        "--steps",
        str(args.steps),
        "--lora-r",
        str(args.lora_r),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"worker {kind} {path} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def gib(count: float) -> str:
    return f"{count / 2**30:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lora-r", type=int, default=256)
    parser.add_argument("--worker", choices=("memory", "time"), help=argparse.SUPPRESS)
    parser.add_argument("--path", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        with contextlib.redirect_stdout(sys.stderr):
            result = worker_memory(args) if args.worker == "memory" else worker_time(args)
        print(json.dumps(result))
        return

    memory = {path: run_worker("memory", args, path) for path in PATHS}
    seconds = run_worker("time", args)
    first = {path: memory[path]["losses"][0] for path in PATHS}  # the same weights and batch in both
    print(
        f"mmBERT-base shape, LoRA r={args.lora_r} on Wqkv/Wo/Wi, AdamW, float32 CPU, torch threads "
        f"{args.threads}; batch {args.batch} x {args.length}, {memory['after']['masked']} masked positions; "
        f"{args.steps} steps per path"
    )
    print(f"{'path':<8}{'fwd+bwd GiB':>13}{'whole step GiB':>16}{'peak RSS GiB':>14}{'s / step':>10}{'loss':>12}")
    for path in PATHS:
        print(
            f"{path:<8}{gib(memory[path]['backward_peak']):>13}{gib(memory[path]['step_peak']):>16}"
            f"{gib(memory[path]['peak_rss']):>14}{seconds[path]:>10.2f}{first[path]:>12.6f}"
        )
    print(
        "fwd+bwd / whole step: peak bytes of the tensors a step allocates, up to the end of backward / "
        "including the optimizer update; peak RSS: the whole process (model and optimizer state included)"
    )

    def ratio(key: str) -> str:
        return f"{memory['after'][key] / memory['before'][key]:.2f}x"

    print(
        f"after / before: fwd+bwd {ratio('backward_peak')}, whole step {ratio('step_peak')}, peak RSS "
        f"{ratio('peak_rss')}, seconds per step {seconds['after'] / seconds['before']:.2f}x; loss relative "
        f"difference {abs(first['after'] - first['before']) / abs(first['before']):.1e}"
    )


if __name__ == "__main__":
    main()

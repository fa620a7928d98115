"""How much faster one batch of answers can be than the same answers one at a time, on this machine.

Decodes the same chat questions with `sample` one at a time and as one batch, side by side
(temperature 0, `steps` = `max_tokens`, the exact preset). For the batch it counts the work of
its matrix products (`torch.utils.flop_counter`) and the share of its time they take
(`torch.profiler`). Batching makes the matrix products efficient, but the rest of the work
(element-wise operations, normalisation, attention, the softmax over the vocabulary) grows with
the rows as it does one answer at a time. Two bounds follow:

    matrix products at peak = sequential s / (batch s - their s + their FLOPs / peak FLOP/s)
    all but FLOPs free      = sequential s / (batch FLOPs / peak FLOP/s)

where the peak is the best rate of a large float32 matrix product measured in the same run. The
first bounds the server's answers per second at many clients (benchmarks/bench_server.py) on
this machine unless the model's other operations get cheaper; the second is the loosest bound.

    python benchmarks/bench_batch_ceiling.py [--threads 2] [--questions 16] [--max-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_server import questions
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from diffutron.lm import Diffutron
from diffutron.model.chat import render_chat
from diffutron.sampling.presets import speed_config
from diffutron.sampling.sampler import sample

MATRIX_PRODUCTS = ("mm", "addmm", "bmm")


def peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of the fastest of `repeats` float32 (size x size) @ (size x size) products."""
    left, right = torch.randn(size, size), torch.randn(size, size)
    left @ right
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        left @ right
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    lm = Diffutron.from_pretrained(None, device="cpu", dtype="float32")
    config = speed_config("exact", max_new_tokens=args.max_tokens, steps=args.max_tokens, temperature=0)
    prompts = [lm.encode(render_chat(question)) for question in questions(args.questions)]

    def one_at_a_time() -> None:
        for prompt in prompts:
            sample(lm.model, lm.tokenizer, [prompt], config)

    def one_batch() -> None:
        sample(lm.model, lm.tokenizer, prompts, config)

    runs = {"one at a time": one_at_a_time, "one batch": one_batch}
    flops, product_flops = {}, 0
    for name, run in runs.items():
        with FlopCounterMode(display=False) as counter:
            run()
        flops[name] = counter.get_total_flops()
        if name == "one batch":
            counts = counter.get_flop_counts()["Global"]
            product_flops = sum(count for op, count in counts.items() if op.__name__.split(".")[0] in MATRIX_PRODUCTS)
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        one_batch()
    self_times = {event.key: event.self_cpu_time_total for event in profiled.key_averages()}
    product_share = sum(self_times.get(f"aten::{op}", 0) for op in MATRIX_PRODUCTS) / sum(self_times.values())
    seconds = {name: float("inf") for name in runs}
    for _ in range(args.repeats):  # interleaved, best of each: a shared machine's load hits both alike
        for name, run in runs.items():
            began = time.perf_counter()
            run()
            seconds[name] = min(seconds[name], time.perf_counter() - began)
    peak = peak_flops()

    print(f"threads={args.threads} questions={len(prompts)} max_tokens={args.max_tokens}")
    print(f"peak float32 matrix product: {peak / 1e9:.0f} GFLOP/s")
    print(f"{'path':<16}{'seconds':>9}{'GFLOP':>9}{'GFLOP/s':>9}{'of peak':>9}")
    for name in runs:
        rate = flops[name] / seconds[name]
        print(f"{name:<16}{seconds[name]:>9.2f}{flops[name] / 1e9:>9.1f}{rate / 1e9:>9.0f}{rate / peak:>9.0%}")
    sequential, batch = seconds["one at a time"], seconds["one batch"]
    product_seconds = product_share * batch
    print(
        f"batch: matrix products {product_share:.0%} of its time at "
        f"{product_flops / product_seconds / 1e9:.0f} GFLOP/s, the rest {batch - product_seconds:.2f} s"
    )
    print(f"batch speed-up: {sequential / batch:.2f}x")
    at_peak = sequential / (batch - product_seconds + product_flops / peak)
    print(f"bound, matrix products at peak: {at_peak:.2f}x")
    print(f"bound, all but FLOPs free: {sequential / (flops['one batch'] / peak):.2f}x")


if __name__ == "__main__":
    main()

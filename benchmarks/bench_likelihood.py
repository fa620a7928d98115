"""Batched continuation likelihood vs one request per forward pass, side by side in one run.

A randomly initialised small ModernBERT (mmBERT's 256k vocabulary, so the output layer costs
what it does in the real model; no download) scores a CETVEL-like workload: contexts of
40-120 tokens, continuations of 1-3 tokens (multiple-choice options). The baseline is the
public code's shape: every request gets its own forward pass (its Monte-Carlo rows batched
together). The batched scorer packs rows of many requests into each pass. Both use the same
masks (drawn per request), so their scores must agree; the largest difference is printed.

    python benchmarks/bench_likelihood.py [--threads 1 2] [--requests 64] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM

from diffutron.eval.likelihood import ContinuationScorer, Pair
from workloads import MMBERT_BASE, tokenizer_with_mmbert_ids

SMALL = dict(
    MMBERT_BASE,
    hidden_size=256,
    num_hidden_layers=4,
    intermediate_size=384,
    num_attention_heads=4,
    max_position_embeddings=512,
)


def small_model(device: str) -> ModernBertForMaskedLM:
    torch.manual_seed(0)
    return ModernBertForMaskedLM(ModernBertConfig(**SMALL)).eval().to(device)


def workload(requests: int, seed: int = 0) -> list[Pair]:
    """Multiple-choice shaped: groups of 4 options sharing a context."""
    rng = random.Random(seed)
    pairs = []
    while len(pairs) < requests:
        context = tuple(rng.randrange(5, SMALL["vocab_size"]) for _ in range(rng.randint(40, 120)))
        for _ in range(4):
            length = rng.choice((1, 1, 1, 2, 3))
            pairs.append(Pair(context, tuple(rng.randrange(5, SMALL["vocab_size"]) for _ in range(length))))
    return pairs[:requests]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="masked rows per pass (batched scorer)")
    parser.add_argument("--mc-num", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings of each")
    args = parser.parse_args()

    model, tokenizer = small_model(args.device), tokenizer_with_mmbert_ids()
    pairs = workload(args.requests)
    batched = ContinuationScorer(model, tokenizer, mc_num=args.mc_num, batch_size=args.batch_size)
    single = ContinuationScorer(model, tokenizer, mc_num=args.mc_num, batch_size=args.mc_num)
    print(
        f"{len(pairs)} requests, contexts 40-120 tokens, continuations 1-3 tokens, mc_num {args.mc_num}, "
        f"model hidden {SMALL['hidden_size']} x {SMALL['num_hidden_layers']} layers, vocab {SMALL['vocab_size']}, "
        f"device {args.device}"
    )
    print(f"{'threads':>7} {'one/pass req/s':>15} {'batched req/s':>14} {'speed-up':>9}  max |diff|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        single.score(pairs[:4]), batched.score(pairs[:4])  # warm-up
        single_time = batched_time = float("inf")
        for _ in range(args.repeats):  # best of N, alternating, so that both see the same machine load
            start = time.perf_counter()
            alone = [single.score([pair])[0].logprob for pair in pairs]
            single_time = min(single_time, time.perf_counter() - start)
            start = time.perf_counter()
            together = [score.logprob for score in batched.score(pairs)]
            batched_time = min(batched_time, time.perf_counter() - start)
        difference = max(abs(a - b) for a, b in zip(alone, together))
        print(
            f"{threads:>7} {len(pairs) / single_time:>15.2f} {len(pairs) / batched_time:>14.2f} "
            f"{single_time / batched_time:>8.2f}x  {difference:.2e}"
        )


if __name__ == "__main__":
    main()

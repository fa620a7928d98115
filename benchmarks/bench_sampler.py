"""Reference sampler loop vs `diffutron.sample` on a model of mmBERT-base's exact shape.

Both run in the same process on the same randomly initialised 307M-parameter ModernBERT
(no download). At temperature 0 (the default here) their outputs are compared token for
token; at a temperature > 0 both draw from the same distribution with different noise, so
only the speed is compared. Reports tokens per second of each and their ratio per thread count.

With `--floor`, it also times the two passes an exact step cannot skip (the encoder over the
whole canvas, the output layer at MIN_GEMM_ROWS rows) and reports the largest speed-up any exact
sampler could reach: the reference step time over that floor.

    python benchmarks/bench_sampler.py [--threads 1 2] [--temperature 0] [--repeats 1] [--floor]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import ModernBertForMaskedLM

from diffutron import GenerationConfig, sample
from diffutron.model.parts import MIN_GEMM_ROWS, MaskedLMParts
from diffutron.sampling.reference import reference_sample
from measure import best_seconds
from workloads import MMBERT_BASE, mmbert_shaped_model, tokenizer_with_mmbert_ids


@torch.no_grad()
def exact_floor(model: ModernBertForMaskedLM, canvas: torch.Tensor) -> dict[str, float]:
    """Seconds of the encoder pass, and of the output layer at MIN_GEMM_ROWS rows and at every row."""
    parts = MaskedLMParts(model)
    hidden = parts.hidden(canvas, None)[0]
    return {
        "encoder": best_seconds(lambda: parts.hidden(canvas, None)),
        "head_min_rows": best_seconds(lambda: parts.logits(hidden[:MIN_GEMM_ROWS])),
        "head_all_rows": best_seconds(lambda: parts.logits(hidden)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prompt-tokens", type=int, default=30)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--block-length", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--floor", action="store_true", help="also time the passes an exact step needs")
    args = parser.parse_args()

    model, tokenizer = mmbert_shaped_model(), tokenizer_with_mmbert_ids()
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(5, MMBERT_BASE["vocab_size"], (args.prompt_tokens,), generator=generator).tolist()
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        steps=args.steps,
        block_length=args.block_length,
        temperature=args.temperature,
        early_stop=False,
    )
    print(
        f"prompt {args.prompt_tokens} tokens, {args.max_new_tokens} new, {args.steps} steps, "
        f"block {args.block_length}, temperature {config.temperature}, "
        f"repetition penalty {config.repetition_penalty}"
    )
    print(f"{'threads':>7} {'oracle tok/s':>13} {'sample tok/s':>13} {'speed-up':>9}  identical")
    for threads in args.threads:
        torch.set_num_threads(threads)
        oracle_time = fast_time = 0.0
        identical = True
        for _ in range(args.repeats):
            start = time.perf_counter()
            expected = reference_sample(
                model,
                tokenizer,
                [prompt],
                max_new_tokens=config.max_new_tokens,
                steps=config.steps,
                block_length=config.block_length,
                repetition_penalty=config.repetition_penalty,
                temperature=config.temperature,
            )
            oracle_time += time.perf_counter() - start
            start = time.perf_counter()
            actual = sample(model, tokenizer, [prompt], config)
            fast_time += time.perf_counter() - start
            identical &= torch.equal(actual, expected)
        verdict = identical if config.temperature == 0 else "n/a (sampled)"
        tokens = args.max_new_tokens * args.repeats
        print(
            f"{threads:>7} {tokens / oracle_time:>13.2f} {tokens / fast_time:>13.2f} "
            f"{oracle_time / fast_time:>8.2f}x  {verdict}"
        )
        if args.floor:
            canvas = torch.tensor([prompt + [tokenizer.mask_token_id] * args.max_new_tokens])
            floor = exact_floor(model, canvas)
            reference_step = oracle_time / (args.steps * args.repeats)
            fast_step = fast_time / (args.steps * args.repeats)
            print(
                f"        per step: reference {reference_step:.3f} s, sample {fast_step:.3f} s; "
                f"encoder {floor['encoder']:.3f} s, output layer {floor['head_min_rows']:.3f} s at "
                f"{MIN_GEMM_ROWS} rows / {floor['head_all_rows']:.3f} s at {canvas.shape[1]} rows; "
                f"exact ceiling {reference_step / (floor['encoder'] + floor['head_min_rows']):.2f}x"
            )


if __name__ == "__main__":
    main()

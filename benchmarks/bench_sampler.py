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
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models
from transformers import ModernBertConfig, ModernBertForMaskedLM, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.oracle import reference_sample  # noqa: E402

from diffutron import GenerationConfig, sample  # noqa: E402
from diffutron.model.parts import MIN_GEMM_ROWS, MaskedLMParts  # noqa: E402

MMBERT_BASE = dict(
    vocab_size=256000, hidden_size=768, num_hidden_layers=22, intermediate_size=1152,
    num_attention_heads=12, global_attn_every_n_layers=3, local_attention=128,
    max_position_embeddings=8192, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    cls_token_id=2, sep_token_id=1,
)


def mmbert_shaped_model() -> ModernBertForMaskedLM:
    torch.manual_seed(0)
    model = ModernBertForMaskedLM(ModernBertConfig(**MMBERT_BASE)).eval()
    with torch.no_grad():  # spread the logits a little, as a trained model's are
        model.decoder.bias.normal_(0, 1.0)
    return model


def tokenizer_with_mmbert_ids() -> PreTrainedTokenizerFast:
    """Special tokens at mmBERT's ids (pad 0, eos 1, bos 2, unk 3, mask 4)."""
    vocab = {token: index for index, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
        pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>", mask_token="<mask>",
    )


def best_seconds(run, repeats: int = 5) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


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
        max_new_tokens=args.max_new_tokens, steps=args.steps, block_length=args.block_length,
        temperature=args.temperature, early_stop=False,
    )
    print(f"prompt {args.prompt_tokens} tokens, {args.max_new_tokens} new, {args.steps} steps, "
          f"block {args.block_length}, temperature {config.temperature}, "
          f"repetition penalty {config.repetition_penalty}")
    print(f"{'threads':>7} {'oracle tok/s':>13} {'sample tok/s':>13} {'speed-up':>9}  identical")
    for threads in args.threads:
        torch.set_num_threads(threads)
        oracle_time = fast_time = 0.0
        identical = True
        for _ in range(args.repeats):
            start = time.perf_counter()
            expected = reference_sample(
                model, tokenizer, [prompt], max_new_tokens=config.max_new_tokens, steps=config.steps,
                block_length=config.block_length, repetition_penalty=config.repetition_penalty,
                temperature=config.temperature,
            )
            oracle_time += time.perf_counter() - start
            start = time.perf_counter()
            actual = sample(model, tokenizer, [prompt], config)
            fast_time += time.perf_counter() - start
            identical &= torch.equal(actual, expected)
        verdict = identical if config.temperature == 0 else "n/a (sampled)"
        tokens = args.max_new_tokens * args.repeats
        print(f"{threads:>7} {tokens / oracle_time:>13.2f} {tokens / fast_time:>13.2f} "
              f"{oracle_time / fast_time:>8.2f}x  {verdict}")
        if args.floor:
            canvas = torch.tensor([prompt + [tokenizer.mask_token_id] * args.max_new_tokens])
            floor = exact_floor(model, canvas)
            reference_step = oracle_time / (args.steps * args.repeats)
            fast_step = fast_time / (args.steps * args.repeats)
            print(f"        per step: reference {reference_step:.3f} s, sample {fast_step:.3f} s; "
                  f"encoder {floor['encoder']:.3f} s, output layer {floor['head_min_rows']:.3f} s at "
                  f"{MIN_GEMM_ROWS} rows / {floor['head_all_rows']:.3f} s at {canvas.shape[1]} rows; "
                  f"exact ceiling {reference_step / (floor['encoder'] + floor['head_min_rows']):.2f}x")


if __name__ == "__main__":
    main()

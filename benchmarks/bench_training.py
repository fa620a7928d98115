"""Training throughput on CPU: packed sequences vs one document per row.

A synthetic corpus (document lengths log-normal, as web text roughly is) is prepared twice:
one document per row (the paper's layout, padded per batch) and packed into full max_length
chunks (dllm's layout, `diffutron.data.packing.pack`). The same small from-scratch ModernBERT
recipe trains for the same number of steps on each through `diffutron.training.run.train`, in one
process with the thread count set explicitly. Reported: non-padding tokens per second (from
log.jsonl, first steps skipped as warm-up), the mean real tokens per row, and the packed /
unpacked ratio.

    python benchmarks/bench_training.py [--threads 2] [--steps 30] [--max-length 256]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from diffutron.data.packing import PackingCounts, pack
from diffutron.data.prepared import write_prepared
from diffutron.training.callbacks import LOG_NAME, read_log
from diffutron.training.config import (
    CheckpointSettings,
    DataSettings,
    LoggingSettings,
    ModelSettings,
    OptimizerSettings,
    Recipe,
    TrainingSettings,
)
from diffutron.training.run import train

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
WARMUP_RECORDS = 3


def word_tokenizer(vocabulary: int, directory: Path) -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(SPECIALS + [f"w{i}" for i in range(vocabulary)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        unk_token="<unk>", mask_token="<mask>",
    )
    tokenizer.save_pretrained(directory)
    return tokenizer


def synthetic_documents(count: int, max_length: int, tokenizer: PreTrainedTokenizerFast, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(60), 0.8, count).astype(int), 8, max_length - 1)
    first = len(SPECIALS)
    return [rng.integers(first, len(tokenizer), n).tolist() + [tokenizer.eos_token_id] for n in lengths]


def measure(name: str, rows: list[list[int]], args: argparse.Namespace, work: Path, tokenizer_dir: Path) -> dict:
    data = work / f"data-{name}"
    write_prepared(datasets.Dataset.from_dict({"input_ids": rows}), data, {"kind": "pretrain"}, overwrite=False)
    recipe = Recipe(
        task="pretrain",
        output_dir=str(work / f"run-{name}"),
        tokenizer=str(tokenizer_dir),
        model=ModelSettings(from_scratch={
            "hidden_size": args.hidden, "intermediate_size": args.hidden * 2, "num_hidden_layers": args.layers,
            "num_attention_heads": args.hidden // 32, "local_attention": 64,
            "max_position_embeddings": args.max_length,
        }),
        data=DataSettings(train=str(data)),
        optimizer=OptimizerSettings(lr=1e-3),
        training=TrainingSettings(
            batch_size=args.batch_size, max_steps=args.steps, max_length=args.max_length, precision="fp32"
        ),
        checkpoints=CheckpointSettings(save_steps=10 * args.steps),
        logging=LoggingSettings(steps=1, tensorboard=False),
    )
    train(recipe)
    records = read_log(Path(recipe.output_dir) / LOG_NAME)[WARMUP_RECORDS - 1 :]
    tokens = records[-1]["tokens"] - records[0]["tokens"]
    seconds = sum(
        (later["tokens"] - earlier["tokens"]) / later["tokens_per_second"]
        for earlier, later in zip(records, records[1:])
    )
    return {
        "name": name,
        "rows": len(rows),
        "tokens_per_second": tokens / seconds,
        "mean_row_tokens": sum(map(len, rows)) / len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocabulary", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()

    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        work = Path(scratch)
        tokenizer = word_tokenizer(args.vocabulary, work / "tokenizer")
        documents = synthetic_documents(args.documents, args.max_length, tokenizer, seed=0)
        packed = list(pack(documents, args.max_length, PackingCounts()))
        results = [
            measure("one-document-per-row", documents, args, work, work / "tokenizer"),
            measure("packed", packed, args, work, work / "tokenizer"),
        ]

    print(f"\ntorch threads {args.threads}, {args.steps} steps of batch {args.batch_size} x max length "
          f"{args.max_length}, ModernBERT hidden {args.hidden} x {args.layers} layers, vocabulary "
          f"{len(tokenizer)}, {args.documents} synthetic documents")
    print(f"{'layout':<24}{'rows':>8}{'mean tokens/row':>18}{'tokens/s':>12}")
    for result in results:
        print(f"{result['name']:<24}{result['rows']:>8}{result['mean_row_tokens']:>18.1f}"
              f"{result['tokens_per_second']:>12.0f}")
    ratio = results[1]["tokens_per_second"] / results[0]["tokens_per_second"]
    print(f"packed / one-document-per-row: {ratio:.2f}x (non-padding tokens per second)")


if __name__ == "__main__":
    main()

"""Training throughput on CPU: packed sequences vs one document per row.

A synthetic corpus (document lengths log-normal, as web text roughly is) is prepared twice:
one document per row (the paper's layout, padded per batch) and packed into full max_length
chunks (dllm's layout, `diffutron.data.packing.pack`). Two Trainers are built from the same small
from-scratch ModernBERT recipe (`diffutron.training.run.build_trainer`), and their training steps
(MDLM loss, backward, optimizer step) are interleaved one by one in one process, so that a change
in machine load hits both alike. Reported: non-padding tokens per second of each layout (the
first steps skipped as warm-up) and their ratio.

    python benchmarks/bench_training.py [--threads 2] [--steps 30] [--max-length 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from diffutron.data.packing import PackingCounts, pack
from diffutron.data.prepared import write_prepared
from diffutron.training.config import (
    DataSettings,
    LoggingSettings,
    ModelSettings,
    OptimizerSettings,
    Recipe,
    TrainingSettings,
)
from diffutron.training.run import build_trainer

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
WARMUP_STEPS = 3


def word_tokenizer(vocabulary: int, directory: Path) -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(SPECIALS + [f"w{i}" for i in range(vocabulary)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    tokenizer.save_pretrained(directory)
    return tokenizer


def synthetic_documents(count: int, max_length: int, tokenizer: PreTrainedTokenizerFast, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(60), 0.8, count).astype(int), 8, max_length - 1)
    first = len(SPECIALS)
    return [rng.integers(first, len(tokenizer), n).tolist() + [tokenizer.eos_token_id] for n in lengths]


def recipe_for(name: str, rows: list[list[int]], args: argparse.Namespace, work: Path) -> Recipe:
    data = work / f"data-{name}"
    write_prepared(datasets.Dataset.from_dict({"input_ids": rows}), data, {"kind": "pretrain"}, overwrite=False)
    return Recipe(
        task="pretrain",
        output_dir=str(work / f"run-{name}"),
        tokenizer=str(work / "tokenizer"),
        model=ModelSettings(
            from_scratch={
                "hidden_size": args.hidden,
                "intermediate_size": args.hidden * 2,
                "num_hidden_layers": args.layers,
                "num_attention_heads": args.hidden // 32,
                "local_attention": 64,
                "max_position_embeddings": args.max_length,
            }
        ),
        data=DataSettings(train=str(data)),
        optimizer=OptimizerSettings(lr=1e-3, schedule="constant", warmup=0),
        training=TrainingSettings(batch_size=args.batch_size, max_length=args.max_length, precision="fp32"),
        logging=LoggingSettings(tensorboard=False),
    )


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
        layouts = {
            "one-document-per-row": documents,
            "packed": list(pack(documents, args.max_length, PackingCounts())),
        }
        runs = {}
        for name, rows in layouts.items():
            trainer = build_trainer(recipe_for(name, rows, args, work))
            trainer.create_optimizer()
            trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(), which is not used here
            trainer.model.train()
            runs[name] = {
                "trainer": trainer,
                "batches": iter(trainer.get_train_dataloader()),
                "tokens": 0,
                "seconds": 0.0,
                "positions": 0,
            }
        for step in range(args.steps):
            order = list(runs) if step % 2 == 0 else list(reversed(runs))
            for name in order:
                run = runs[name]
                batch = next(run["batches"])
                trainer = run["trainer"]
                start = time.perf_counter()
                trainer.training_step(trainer.model, batch)
                trainer.optimizer.step()
                trainer.optimizer.zero_grad()
                elapsed = time.perf_counter() - start
                if step >= WARMUP_STEPS:
                    run["tokens"] += int(batch["attention_mask"].sum())
                    run["positions"] += batch["attention_mask"].numel()
                    run["seconds"] += elapsed

    print(
        f"\ntorch threads {args.threads}; {args.steps} interleaved steps per layout (first {WARMUP_STEPS} "
        f"not timed) of batch {args.batch_size}, max length {args.max_length}; ModernBERT hidden "
        f"{args.hidden} x {args.layers} layers, vocabulary {len(tokenizer)}; {args.documents} synthetic documents"
    )
    print(f"{'layout':<24}{'rows':>7}{'real tokens / batch position':>30}{'tokens/s':>11}")
    rates = {}
    for name, run in runs.items():
        rates[name] = run["tokens"] / run["seconds"]
        print(f"{name:<24}{len(layouts[name]):>7}{run['tokens'] / run['positions']:>30.2f}{rates[name]:>11.0f}")
    ratio = rates["packed"] / rates["one-document-per-row"]
    print(f"packed / one-document-per-row: {ratio:.2f}x (non-padding tokens per second)")


if __name__ == "__main__":
    main()

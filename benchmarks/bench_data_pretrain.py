"""Corpus building throughput: `build_pretrain` end to end vs the bare tokenizer on the same documents.

A synthetic JSONL corpus (Turkish words, document lengths spread so that some exceed max_length)
is tokenized once with the tokenizer alone (batched, as the builder does) and once by the whole
pipeline (read, clean, tokenize, filter, Arrow cache, pool sample, shuffle, write shards +
manifest), in one process. Reported: documents per second of each and their ratio, i.e. what the
pipeline costs on top of tokenization. The default tokenizer is the embedded model's (no
download); pass --tokenizer DIR for a real one (e.g. a local copy of jhu-clsp/mmBERT-base).

    python benchmarks/bench_data_pretrain.py [--documents 50000] [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from diffutron.data.documents import batched
from diffutron.data.pretrain import build_pretrain
from diffutron.data.recipes import PretrainRecipe, PretrainSource
from diffutron.model.loading import default_model_path, load_tokenizer
from diffutron.model.tokens import encode
from workloads import TURKISH_WORDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=50_000)
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the embedded model's)")
    parser.add_argument("--max-length", type=int, default=512)
    arguments = parser.parse_args()

    tokenizer = load_tokenizer(arguments.tokenizer or str(default_model_path()))
    words = TURKISH_WORDS
    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 200))) for _ in range(arguments.documents)]

    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")

        start = time.perf_counter()
        tokens = sum(len(ids) for batch in batched(texts, 1000) for ids in encode(tokenizer, batch))
        tokenizer_seconds = time.perf_counter() - start

        recipe = PretrainRecipe(
            output=Path(folder) / "out",
            tokenizer=arguments.tokenizer or "embedded",
            max_length=arguments.max_length,
            pool_size=arguments.documents // 2,
            sources=[PretrainSource(name="web", path=corpus)],
        )
        start = time.perf_counter()
        manifest = build_pretrain(recipe, tokenizer=tokenizer)
        pipeline_seconds = time.perf_counter() - start

    counts = manifest["sources"]["web"]
    print(f"documents: {arguments.documents:,} ({tokens:,} tokens; {counts['too_long']:,} longer than max_length)")
    print(f"tokenizer alone : {arguments.documents / tokenizer_seconds:10,.0f} documents/s ({tokenizer_seconds:.1f} s)")
    print(f"build_pretrain  : {arguments.documents / pipeline_seconds:10,.0f} documents/s ({pipeline_seconds:.1f} s)")
    print(f"pipeline / tokenizer time: {pipeline_seconds / tokenizer_seconds:.2f}")


if __name__ == "__main__":
    main()

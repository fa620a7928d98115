"""`diffutron data offline-corpus | train-tokenizer | kenet-sft`: the data of the embedded model.

Heavy modules are imported inside the commands so that `diffutron --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()

SeedOption = Annotated[int, typer.Option(help="Seed of the held-out split (corpus and instruction data must agree).")]
FractionOption = Annotated[float, typer.Option(help="Share of documents / KeNet synsets held out.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace OUT_DIR if it exists.")]


def offline_corpus(
    out_dir: Annotated[Path, typer.Argument(help="Directory to create (train.jsonl, heldout.jsonl, manifest.json).")],
    local: Annotated[
        Optional[list[Path]],
        typer.Option("--input", "-i", help="Extra local file (.txt, .jsonl, .json, .parquet with a text field)."),
    ] = None,
    local_license: Annotated[str, typer.Option(help="License recorded for --input files.")] = "user-provided",
    text_field: Annotated[str, typer.Option(help="Text field of --input records (.jsonl, .json, .parquet).")] = "text",
    seed: SeedOption = 1234,
    heldout_fraction: FractionOption = 0.05,
    max_chars: Annotated[int, typer.Option(help="Cut longer documents at sentence ends (0: never).")] = 1000,
    overwrite: OverwriteOption = False,
) -> None:
    """Turkish text from pip packages (KeNet, Atatürk's speeches, a treebank) + local files."""
    from diffutron.data.offline_corpus import build_offline_corpus, local_sources, package_sources

    sources = package_sources() + local_sources(local or [], local_license, text_field)
    with console.status("Reading the sources ..."):
        manifest = build_offline_corpus(
            out_dir, sources=sources, seed=seed, heldout_fraction=heldout_fraction, max_chars=max_chars, overwrite=overwrite
        )
    for source in manifest["sources"]:
        characters = source["characters_by_split"]
        console.print(
            f"{source['name']:>10}: {source['documents']:,} documents ({source['exact_duplicates_removed']:,} duplicates "
            f"removed), {characters['train']:,} train / {characters['heldout']:,} held-out characters, {source['license']}"
        )
    console.print(f"wrote {out_dir}")


def train_tokenizer(
    corpus_dir: Annotated[Path, typer.Argument(help="An offline corpus directory (train.jsonl, heldout.jsonl).")],
    out_dir: Annotated[Path, typer.Argument(help="Directory for tokenizer.json and tokenizer_config.json.")],
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size, special, byte and chat-tag tokens included.")] = 12000,
    overwrite: OverwriteOption = False,
) -> None:
    """Train a Turkish BPE tokenizer (byte fallback, NFC) and report its fertility on held-out text."""
    from diffutron.data.tokenizer_training import train_corpus_tokenizer
    from diffutron.files import atomic_file

    with console.status("Training the tokenizer ..."):
        report = train_corpus_tokenizer(corpus_dir, out_dir, vocab_size=vocab_size, overwrite=overwrite)
    with atomic_file(out_dir / "training_report.json") as handle:
        json.dump(report, handle, indent=2)
    heldout = report["heldout"]
    console.print(
        f"vocabulary {report['vocab_size']:,}; held-out fertility {heldout['tokens_per_word']:.3f} tokens/word "
        f"({heldout['tokens']:,} tokens, {heldout['words']:,} words); wrote {out_dir}"
    )


def kenet_sft(
    out_dir: Annotated[Path, typer.Argument(help="Directory to create (stage1.jsonl, stage2.jsonl, eval.jsonl).")],
    seed: SeedOption = 1234,
    heldout_fraction: FractionOption = 0.05,
    stage1_limit: Annotated[Optional[int], typer.Option(help="Keep at most this many stage-1 examples.")] = None,
    stage2_limit: Annotated[Optional[int], typer.Option(help="Keep at most this many new stage-2 examples.")] = None,
    replay_fraction: Annotated[float, typer.Option(help="Share of stage 2 that repeats stage-1 questions.")] = 0.25,
    eval_size: Annotated[int, typer.Option(help="Evaluation questions per split (held-out, trained).")] = 200,
    overwrite: OverwriteOption = False,
) -> None:
    """Two-stage instruction data from KeNet (dictionary questions, then richer word tasks)."""
    from diffutron.data.kenet_sft import build_kenet_sft

    with console.status("Building instruction data from KeNet ..."):
        manifest = build_kenet_sft(
            out_dir,
            seed=seed,
            heldout_fraction=heldout_fraction,
            stage1_limit=stage1_limit,
            stage2_limit=stage2_limit,
            replay_fraction=replay_fraction,
            eval_size=eval_size,
            overwrite=overwrite,
        )
    for name, counts in manifest["examples"].items():
        console.print(f"{name}: " + ", ".join(f"{task} {count:,}" for task, count in counts.items()))
    console.print(f"wrote {out_dir}")

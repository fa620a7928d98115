"""`diffutron embedded ...`: build and judge the small model shipped inside the package.

offline-corpus -> train-tokenizer -> kenet-sft -> (data pretrain / sft, train) -> unigram-baseline,
definitions; docs/embedded-model.md walks through it.
"""

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from diffutron.cli.console import console, say
from diffutron.cli.options import (
    DeviceOption,
    DtypeOption,
    JsonOutputOption,
    ModelOption,
    OverwriteOption,
    load,
    with_generation_options,
)
from diffutron.files import check_destination
from diffutron.sampling.config import GenerationConfig

SeedOption = Annotated[int, typer.Option(help="Seed of the held-out split (corpus and questions must agree).")]
FractionOption = Annotated[float, typer.Option(help="Share of documents / KeNet synsets held out.")]


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
    from diffutron.embedded.corpus import build_offline_corpus, local_sources, package_sources

    sources = package_sources() + local_sources(local or [], local_license, text_field)
    with console.status("Reading the sources ..."):
        manifest = build_offline_corpus(
            out_dir,
            sources=sources,
            seed=seed,
            heldout_fraction=heldout_fraction,
            max_chars=max_chars,
            overwrite=overwrite,
        )
    for source in manifest["sources"]:
        characters = source["characters_by_split"]
        say(
            f"{source['name']:>10}: {source['documents']:,} documents "
            f"({source['exact_duplicates_removed']:,} duplicates removed), {characters['train']:,} train / "
            f"{characters['heldout']:,} held-out characters, {source['license']}"
        )
    say(f"wrote {out_dir}")


def train_tokenizer(
    corpus_dir: Annotated[Path, typer.Argument(help="An offline corpus directory (train.jsonl, heldout.jsonl).")],
    out_dir: Annotated[Path, typer.Argument(help="Directory for tokenizer.json and tokenizer_config.json.")],
    vocab_size: Annotated[
        int, typer.Option(help="Vocabulary size, special, byte and chat-tag tokens included.")
    ] = 12000,
    overwrite: OverwriteOption = False,
) -> None:
    """Train a Turkish BPE tokenizer (byte fallback, NFC) and report its fertility on held-out text."""
    from diffutron.embedded.corpus import train_corpus_tokenizer
    from diffutron.files import atomic_file

    with console.status("Training the tokenizer ..."):
        report = train_corpus_tokenizer(corpus_dir, out_dir, vocab_size=vocab_size, overwrite=overwrite)
    with atomic_file(out_dir / "training_report.json") as handle:  # inside the new tokenizer directory
        json.dump(report, handle, indent=2)
    heldout = report["heldout"]
    say(
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
    from diffutron.embedded.questions import build_kenet_sft

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
        say(f"{name}: " + ", ".join(f"{task} {count:,}" for task, count in counts.items()))
    say(f"wrote {out_dir}")


def unigram_baseline(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Held-out text: .txt (paragraphs), .jsonl, .json or .parquet.")
    ],
    train: Annotated[Path, typer.Option("--train", help="Training text whose token frequencies the baseline uses.")],
    tokenizer: Annotated[
        Optional[str], typer.Option(help="Tokenizer directory (default: the embedded model's).")
    ] = None,
    mlm_probability: Annotated[float, typer.Option(help="Share of tokens masked, as for `eval ppl`.")] = 0.15,
    max_length: Annotated[int, typer.Option(help="Tokens per sequence, as for `eval ppl`.")] = 512,
    seed: Annotated[int, typer.Option(help="The masks' seed, as for `eval ppl`.")] = 0,
    text_field: Annotated[str, typer.Option(help="Text field of JSONL records.")] = "text",
    output: JsonOutputOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Perplexity of token frequencies alone, at the positions `eval ppl` masks with the same settings."""
    from diffutron.data.readers import iter_local_texts
    from diffutron.embedded.unigram import unigram_perplexity
    from diffutron.eval.sources import load_documents
    from diffutron.model.loading import default_model_path, load_tokenizer

    if output is not None:
        check_destination(output, kind="file", overwrite=overwrite, inputs=[data, train])
    loaded = load_tokenizer(tokenizer or str(default_model_path()))
    documents = load_documents(str(data), text_field=text_field)
    with console.status("Counting tokens and scoring ..."):
        result = unigram_perplexity(
            loaded,
            (text for _, text in iter_local_texts(train, text_field)),
            documents,
            mlm_probability=mlm_probability,
            max_length=max_length,
            seed=seed,
        )
    payload = {**result.to_dict(), "data": str(data), "train": str(train), "tokenizer": tokenizer or "embedded"}
    say(
        f"unigram perplexity {result.perplexity:.2f} (cross-entropy {result.cross_entropy:.4f} nats) over "
        f"{result.tokens:,} masked tokens; frequencies from {result.training_tokens:,} training tokens"
    )
    _write(output, payload)


@with_generation_options
def definitions(
    questions: Annotated[Path, typer.Option("--questions", "-q", help="JSONL with question, definition (and split).")],
    batch_size: Annotated[int, typer.Option(help="Questions per batch.")] = 16,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    output: JsonOutputOption = None,
    overwrite: OverwriteOption = False,
    config: GenerationConfig = GenerationConfig(),
) -> None:
    """chrF of the answers to definition questions against the reference definitions, per split."""
    from rich.progress import Progress

    from diffutron.embedded.definitions import definition_scores, read_questions

    if output is not None:
        check_destination(output, kind="file", overwrite=overwrite, inputs=[questions])
    rows = read_questions(questions)
    lm = load(model, device, dtype)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("answering", total=len(rows))
        result = definition_scores(
            lambda batch, settings: lm.generate(batch, settings),
            rows,
            config,
            batch_size=batch_size,
            progress=lambda done, total: progress.update(bar, completed=done),
        )
    for split, scores in result["splits"].items():
        say(
            f"{split}: chrF {scores['chrf']:.2f} over {scores['questions']} questions "
            f"({scores['empty_answers']} empty answers)"
        )
    sampler = dataclasses.asdict(config)
    _write(output, {**result, "model": model or "embedded", "questions_file": str(questions), "sampler": sampler})


def _write(output: Optional[Path], payload: dict) -> None:
    if output is not None:
        from diffutron.cli.reports import write_json

        write_json(output, payload)
        say(f"wrote {output}")

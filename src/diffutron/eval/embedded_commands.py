"""`diffutron eval unigram-baseline | definitions`: the quality figures of the embedded model.

Registered on `eval_app` when this module is imported (diffutron.cli imports it).
"""

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from diffutron.cli import DeviceOption, DtypeOption, ModelOption, console, load, with_generation_options
from diffutron.eval.commands import eval_app
from diffutron.sampling.config import GenerationConfig

OutputOption = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the results as JSON here.")]


@eval_app.command("unigram-baseline")
def unigram_baseline(
    data: Annotated[Path, typer.Option("--data", "-d", help="Held-out text: .txt (paragraphs), .jsonl, .json or .parquet.")],
    train: Annotated[Path, typer.Option("--train", help="Training text whose token frequencies the baseline uses.")],
    tokenizer: Annotated[Optional[str], typer.Option(help="Tokenizer directory [default: the embedded model's].")] = None,
    mlm_probability: Annotated[float, typer.Option(help="Share of tokens masked, as for `eval ppl`.")] = 0.15,
    max_length: Annotated[int, typer.Option(help="Tokens per sequence, as for `eval ppl`.")] = 512,
    seed: Annotated[int, typer.Option(help="The masks' seed, as for `eval ppl`.")] = 0,
    text_field: Annotated[str, typer.Option(help="Text field of JSONL records.")] = "text",
    output: OutputOption = None,
) -> None:
    """Perplexity of token frequencies alone, at the positions `eval ppl` masks with the same settings."""
    from diffutron.data.readers import iter_local_texts
    from diffutron.eval.sources import load_documents
    from diffutron.eval.unigram import unigram_perplexity
    from diffutron.model.loading import default_model_path
    from diffutron.training.models import load_tokenizer

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
    console.print(
        f"unigram perplexity {result.perplexity:.2f} (cross-entropy {result.cross_entropy:.4f} nats) over "
        f"{result.tokens:,} masked tokens; frequencies from {result.training_tokens:,} training tokens"
    )
    _write(output, payload)


def definitions(
    questions: Annotated[Path, typer.Option("--questions", "-q", help="JSONL with question, definition (and split).")],
    batch_size: Annotated[int, typer.Option(help="Questions per batch.")] = 16,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    output: OutputOption = None,
    config: GenerationConfig = GenerationConfig(),
) -> None:
    """chrF of the answers to definition questions against the reference definitions, per split."""
    from rich.progress import Progress

    from diffutron.eval.definitions import definition_scores, read_questions

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
        console.print(
            f"{split}: chrF {scores['chrf']:.2f} over {scores['questions']} questions "
            f"({scores['empty_answers']} empty answers)"
        )
    _write(output, {**result, "model": model or "embedded", "questions_file": str(questions), "sampler": dataclasses.asdict(config)})


eval_app.command("definitions")(with_generation_options(definitions))


def _write(output: Optional[Path], payload: dict) -> None:
    if output is not None:
        from diffutron.eval.report import write_json

        write_json(output, payload)
        console.print(f"wrote {output}")

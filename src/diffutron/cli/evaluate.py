"""`diffutron eval ppl | cetvel | lm-eval`: the paper's evaluations, and lm-eval's own command line."""

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from diffutron.cli.console import console, say, warn
from diffutron.cli.options import DeviceOption, DtypeOption, JsonOutputOption, ModelOption, OverwriteOption, load
from diffutron.errors import DiffutronError
from diffutron.files import check_destination


def ppl(
    data: Annotated[
        str,
        typer.Option("--data", "-d", help="A .txt (paragraphs), .jsonl, .json or .parquet file, or a hub dataset id."),
    ],
    model: ModelOption = None,
    mlm_probability: Annotated[float, typer.Option(help="Share of tokens masked (paper: 0.15).")] = 0.15,
    max_length: Annotated[
        Optional[int], typer.Option(help="Tokens per sequence, special tokens included (default: the model's context).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Fixes the masks and the bootstrap.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 8,
    text_field: Annotated[str, typer.Option(help="Text field of JSONL records / dataset column.")] = "text",
    split: Annotated[str, typer.Option(help="Split of a hub dataset.")] = "test",
    corruption: Annotated[
        Literal["mask", "bert"], typer.Option(help="mask: every selected token masked; bert: 80/10/10.")
    ] = "mask",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the interval (0: none).")] = 1000,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    output: JsonOutputOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """MLM perplexity: exp of the mean cross-entropy over the masked tokens (the paper's metric)."""
    from rich.progress import Progress

    from diffutron.cli.reports import perplexity_table, write_json
    from diffutron.eval.perplexity import mlm_perplexity
    from diffutron.eval.sources import load_documents

    if output is not None:
        check_destination(output, kind="file", overwrite=overwrite, inputs=[data])
    documents = load_documents(data, text_field=text_field, split=split)
    lm = load(model, device, dtype)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("scoring", total=None)
        result = mlm_perplexity(
            lm.model,
            lm.tokenizer,
            documents,
            mlm_probability=mlm_probability,
            max_length=max_length,
            seed=seed,
            batch_size=batch_size,
            corruption=corruption,
            bootstrap_samples=bootstrap,
            progress=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    payload = {**result.to_dict(), "model": model or "embedded", "data": data}
    console.print(perplexity_table(payload))
    if output is not None:
        write_json(output, payload)
        say(f"wrote {output}")


def cetvel(
    tasks: Annotated[
        Optional[list[str]], typer.Option("--tasks", "-t", help="Tasks (repeat or comma-separate); default: all seven.")
    ] = None,
    model: ModelOption = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N documents of each task.")] = None,
    mc_num: Annotated[int, typer.Option(help="Monte-Carlo rows per multi-token continuation.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Masked rows per forward pass.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the Monte-Carlo masks.")] = 0,
    bootstrap_iters: Annotated[int, typer.Option(help="Bootstrap resamples for F1 standard errors (0: none).")] = 1000,
    data_dir: Annotated[Optional[Path], typer.Option(help="Read <task>.jsonl files here instead of the hub.")] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    output: JsonOutputOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """The paper's seven CETVEL tasks, beside chance and majority-class baselines."""
    from diffutron.cli.reports import cetvel_table, write_json
    from diffutron.eval.cetvel import resolve_tasks, run_cetvel
    from diffutron.eval.harness_model import DiffutronHarnessLM

    chosen = resolve_tasks(tasks)
    if data_dir is not None and not data_dir.is_dir():
        raise DiffutronError(f"--data-dir {data_dir} is not a directory")
    if output is not None:
        check_destination(output, kind="file", overwrite=overwrite)
    lm = load(model, device, dtype)
    harness_lm = DiffutronHarnessLM(lm=lm, batch_size=batch_size, mc_num=mc_num, seed=seed)
    report = run_cetvel(harness_lm, chosen, limit=limit, data_dir=data_dir, bootstrap_iters=bootstrap_iters)
    report["settings"]["model"] = model or "embedded"
    console.print(cetvel_table(report, Path(model).name if model else "embedded"))
    for row in report["tasks"]:
        if row.get("dropped_documents"):
            warn(f"{row['title']}: {row['dropped_documents']} documents without a gold label were left out")
    truncated = sum(row["truncated_contexts"] for row in report["tasks"])
    if truncated:
        warn(f"{truncated} contexts were longer than the model window and cut from the left")
    if output is not None:
        write_json(output, report)
        say(f"wrote {output}")


def lm_eval(ctx: typer.Context) -> None:
    """lm-eval's own command line, with the `diffutron` model and the packaged tasks available.

    Example: diffutron eval lm-eval --model diffutron --model_args pretrained=DIR,mc_num=64
    --tasks diffutron_cetvel --limit 20
    """
    from diffutron.eval.harness_cli import run_lm_eval_cli

    run_lm_eval_cli(list(ctx.args))

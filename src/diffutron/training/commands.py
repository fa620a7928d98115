"""CLI commands of the training area: train, merge-lora, plot-loss (heavy imports stay inside)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()


def train(
    config: Annotated[Path, typer.Argument(help="Recipe YAML (see configs/).")],
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override a recipe value: --set training.max_steps=100 (repeatable)."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest complete checkpoint.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print the trainable parameter count (reads config.json only).")
    ] = False,
) -> None:
    """Train a masked diffusion LM from a recipe (single process, or under accelerate launch / torchrun)."""
    from diffutron.training.config import load_recipe

    recipe = load_recipe(config, set_ or [])
    if dry_run:
        from diffutron.training.run import dry_run as count

        console.print(count(recipe), highlight=False)
        return
    from diffutron.training.run import is_main_process
    from diffutron.training.run import train as run

    main = is_main_process()  # under torchrun / accelerate launch only rank 0 reports
    level = logging.INFO if main else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    final = run(recipe, resume=resume)
    if main:
        console.print(f"final model: {final}", highlight=False)


def merge_lora(
    adapter_dir: Annotated[Path, typer.Argument(help="LoRA adapter directory (RUN_DIR/adapter or a checkpoint).")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the merged masked-LM checkpoint.")],
    base: Annotated[
        Optional[str], typer.Option(help="Base model [default: base_model_name_or_path of the adapter].")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Largest logit difference allowed, relative to the logit scale.")] = 1e-4,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT_DIR if it exists.")] = False,
) -> None:
    """Merge LoRA adapters into the masked LM (MLM head kept), checking logits before writing."""
    from diffutron.training.merge import merge_lora as merge

    difference = merge(adapter_dir, out_dir, base=base, tolerance=tolerance, overwrite=overwrite)
    console.print(f"merged into {out_dir} (largest logit difference {difference:.3g})", highlight=False)


def plot_loss(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories holding log.jsonl.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("loss.png"),
    smoothing: Annotated[int, typer.Option(help="Moving-average window in logged steps (1: raw).")] = 1,
) -> None:
    """Plot training loss against step for one or more runs."""
    from diffutron.training.plot import plot_loss as plot

    plot(run_dirs, output, smoothing=smoothing)
    console.print(f"wrote {output}", highlight=False)

"""`diffutron train | merge-lora | plot-loss`: train a model, merge its adapters, plot its loss."""

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from diffutron.cli.console import say
from diffutron.cli.options import OverwriteOption, SetOption


def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see configs/).", show_default=False)],
    overrides: SetOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest complete checkpoint.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print the trainable parameter count (reads config.json only).")
    ] = False,
) -> None:
    """Train a masked diffusion LM from a recipe (single process, or under accelerate launch / torchrun)."""
    from diffutron.training.config import load_training_recipe

    loaded = load_training_recipe(recipe, overrides or [])
    if dry_run:
        from diffutron.training.run import dry_run as count

        say(count(loaded))
        return
    from diffutron.training.run import is_main_process
    from diffutron.training.run import train as run

    main = is_main_process()  # under torchrun / accelerate launch only rank 0 reports
    logging.basicConfig(level=logging.INFO if main else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    final = run(loaded, resume=resume)
    if main:
        say(f"final model: {final}")


def merge_lora(
    adapter_dir: Annotated[Path, typer.Argument(help="LoRA adapter directory (RUN_DIR/adapter or a checkpoint).")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the merged masked-LM checkpoint.")],
    base: Annotated[
        Optional[str], typer.Option(help="Base model (default: the adapter's base_model_name_or_path).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Largest logit difference allowed, relative to the logit scale.")
    ] = 1e-4,
    overwrite: OverwriteOption = False,
) -> None:
    """Merge LoRA adapters into the masked LM (MLM head kept), checking logits before writing."""
    from diffutron.training.merge import merge_lora as merge

    difference = merge(adapter_dir, out_dir, base=base, tolerance=tolerance, overwrite=overwrite)
    say(f"merged into {out_dir} (largest logit difference {difference:.3g})")


def plot_loss(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories holding log.jsonl.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("loss.png"),
    smoothing: Annotated[int, typer.Option(help="Moving-average window in logged steps (1: raw).")] = 1,
) -> None:
    """Plot training loss against step for one or more runs."""
    from diffutron.training.plot import plot_loss as plot

    plot(run_dirs, output, smoothing=smoothing)
    say(f"wrote {output}")

"""`diffutron card | push`: write a model's card from its run, and upload the model to the Hugging Face Hub."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from diffutron.cli.console import say
from diffutron.cli.options import OverwriteOption


def card(
    path: Annotated[Path, typer.Argument(help="A run folder (its final/ gets the card) or a model folder.")],
    license: Annotated[
        Optional[str], typer.Option(help="Hub license id (default: the base model's, or the data's one license).")
    ] = None,
    base_model: Annotated[
        Optional[str], typer.Option(help="Hub id of the model it derives from (default: the run's, if a Hub id).")
    ] = None,
    repo_id: Annotated[Optional[str], typer.Option(help="The Hub repo the usage lines name.")] = None,
    run: Annotated[
        Optional[Path], typer.Option("--run", help="The run of a model saved outside it (a merged adapter).")
    ] = None,
    notes: Annotated[
        Optional[Path], typer.Option(help="Markdown added at the end (limitations, samples); kept on refresh.")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Write or refresh README.md (Hub metadata, recipe, data, evaluation, loss plot)."""
    from diffutron.training.card import write_card

    written, plot = write_card(
        path, run_dir=run, license=license, base_model=base_model, repo_id=repo_id, notes=notes, overwrite=overwrite
    )
    say(f"wrote {written}" + (f" and {plot}" if plot else ""))


def push(
    directory: Annotated[Path, typer.Argument(help="Model folder: safetensors, config, tokenizer, README.md.")],
    repo_id: Annotated[str, typer.Argument(help="Hub repo id, OWNER/NAME (created if missing).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    revision: Annotated[Optional[str], typer.Option(help="Branch to commit to (created if missing).")] = None,
    commit_message: Annotated[Optional[str], typer.Option(help="Message of the upload commit.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go up; send nothing.")] = False,
) -> None:
    """Upload a model folder to the Hugging Face Hub (safetensors only, never optimizer state)."""
    from diffutron.model.hub_upload import check_repo_id, push_model, upload_plan

    if dry_run:
        check_repo_id(repo_id)
        plan = upload_plan(directory)
        for name in plan.files:
            say(f"{name}  {(directory / name).stat().st_size:,} bytes")
        left = f"; left out: {', '.join(plan.left_out)}" if plan.left_out else ""
        say(f"would upload {len(plan.files)} files ({plan.size:,} bytes) to {repo_id}{left}")
        return
    result = push_model(directory, repo_id, private=private, revision=revision, commit_message=commit_message)
    say(
        f"uploaded {len(result.plan.files)} files ({result.plan.size:,} bytes) to {result.repo_url} "
        f"(revision {result.revision})" + (f": {result.commit_url}" if result.commit_url else "")
    )

"""What marks a directory as a training run, shared by training, the model card and merging."""

from __future__ import annotations

from pathlib import Path

from diffutron.training.callbacks import LOG_NAME
from diffutron.training.checkpoints import PREFIX

RECIPE_NAME = "recipe.yaml"  # the resolved recipe a run records


def is_run_directory(path: Path) -> bool:
    """Written by `train`: its recipe.yaml plus a log, a checkpoint or a final model."""
    return (path / RECIPE_NAME).is_file() and (
        (path / LOG_NAME).is_file() or (path / "final").is_dir() or any(path.glob(f"{PREFIX}*"))
    )

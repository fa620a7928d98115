"""Checkpoint directories of a run: publish atomically, find the newest complete one, keep the last N.

A checkpoint is first written under RUN_DIR/.staging/ and renamed into RUN_DIR only once every
file is in place, so any `checkpoint-N` directory in RUN_DIR is complete; a run killed while
saving leaves only staging debris, which the next save clears. The staging path is fixed (not a
random temporary name) because under DDP every process writes its own files into it. A published
checkpoint damaged afterwards (a disk error, a truncated copy) is skipped by `--resume`, which then
continues from the previous one and says so.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from diffutron.errors import DiffutronError
from diffutron.files import file_damage

logger = logging.getLogger(__name__)

STAGING = ".staging"
PREFIX = "checkpoint-"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")
STATE_FILE = "trainer_state.json"  # the Trainer writes it after weights, optimizer, scheduler and RNG state


def staging_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / STAGING


def is_complete(path: Path) -> bool:
    """Published (renamed out of staging) and holding the trainer state written last.

    Weight and optimizer files differ between single-process, FSDP and DeepSpeed runs, so the
    state file plus the atomic publish are the test rather than a list of file names.
    """
    return (path / STATE_FILE).is_file()


def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    run_dir = Path(run_dir)
    found = []
    if run_dir.is_dir():
        for path in run_dir.iterdir():
            match = _NAME.match(path.name)
            if match and path.is_dir() and is_complete(path):
                found.append((int(match.group(1)), path))
    return sorted(found)


def damage(path: Path) -> str | None:
    """Why a complete checkpoint cannot be resumed from (a truncated or corrupt file), or None."""
    for file in sorted(item for item in path.rglob("*") if item.is_file()):
        problem = file_damage(file)
        if problem is not None:
            return problem
    return None


def newest_checkpoint(run_dir: str | Path) -> Path:
    """The newest intact checkpoint, which `--resume` continues from; a clear error when there is none."""
    found = complete_checkpoints(run_dir)
    if not found:
        raise DiffutronError(
            f"--resume: {run_dir} holds no complete checkpoint (a {PREFIX}N directory with {STATE_FILE}); "
            "start without --resume, or point output_dir at the run to continue"
        )
    problems = []
    for _, path in reversed(found):
        problem = damage(path)
        if problem is None:
            if problems:
                logger.warning(
                    "--resume: %s; resuming from the previous complete checkpoint, %s", "; ".join(problems), path.name
                )
            return path
        problems.append(problem)
    raise DiffutronError(
        f"--resume: every checkpoint in {run_dir} is damaged ({'; '.join(problems)}); "
        "start the run again without --resume in a new output_dir"
    )


def remove(path: Path, run_dir: str | Path) -> None:
    """Delete a directory by first moving it into staging, so it never looks half-deleted."""
    if not path.exists():
        return
    trash = staging_dir(run_dir) / f"deleting-{path.name}"
    shutil.rmtree(trash, ignore_errors=True)
    trash.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def publish(staged: Path, target: Path, run_dir: str | Path) -> None:
    """Move a fully written directory into place (replacing an older one of the same name)."""
    _sync_directory(staged)
    remove(target, run_dir)
    os.replace(staged, target)
    _sync_directory(target.parent)


def keep_last(run_dir: str | Path, count: int) -> None:
    for _, path in complete_checkpoints(run_dir)[:-count]:
        remove(path, run_dir)


def _sync_directory(path: Path) -> None:
    """Flush a directory tree's files and entry lists to disk (best effort where the OS cannot)."""
    for item in [*path.rglob("*"), path]:
        try:
            descriptor = os.open(item, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(descriptor)
        except OSError:
            pass
        finally:
            os.close(descriptor)

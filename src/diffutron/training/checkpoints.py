"""Checkpoint directories of a run: publish atomically, find the newest complete one, keep the last N.

A checkpoint is first written under RUN_DIR/.staging/ and renamed into RUN_DIR only once every
file is in place, so any `checkpoint-N` directory in RUN_DIR is complete; a run killed while
saving leaves only staging debris, which the next save clears. The staging path is fixed (not a
random temporary name) because under DDP every process writes its own files into it. Before the
rename, FILE_LIST records every file of the checkpoint with its size. A published checkpoint damaged
afterwards (a disk error, a truncated copy, a file deleted or cut) is skipped by `--resume`, which
then continues from the previous one and says so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from diffutron.errors import DiffutronError
from diffutron.files import atomic_file, file_damage, read_json_object

logger = logging.getLogger(__name__)

STAGING = ".staging"
PREFIX = "checkpoint-"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")
STATE_FILE = "trainer_state.json"  # the Trainer writes it after weights, optimizer, scheduler and RNG state
FILE_LIST = "checkpoint_files.json"  # {"files": {relative path: size in bytes}}, written last


def staging_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / STAGING


def is_complete(path: Path) -> bool:
    """Published (renamed out of staging only once written): it holds the trainer state or the file list.

    Either one is enough to count it, so that losing one of them later is damage (`damage` says
    which file is missing) rather than a checkpoint silently passed over.
    """
    return (path / STATE_FILE).is_file() or (path / FILE_LIST).is_file()


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


def record_files(path: Path) -> None:
    """List every file of a staged checkpoint with its size, so that a missing or cut one is noticed.

    Which files a checkpoint needs depends on the launch (one process, DDP, FSDP, DeepSpeed): what
    was written is the list, rather than a list of names kept here.
    """
    files = {
        item.relative_to(path).as_posix(): item.stat().st_size
        for item in sorted(path.rglob("*"))
        if item.is_file() and item.name != FILE_LIST
    }
    with atomic_file(path / FILE_LIST) as handle:
        json.dump({"files": files}, handle, indent=1)


def missing_files(path: Path) -> str | None:
    """Why the files of a checkpoint are not those it was written with (one missing or resized), or None."""
    if not (path / FILE_LIST).is_file():
        return f"{path / FILE_LIST} is missing, so the checkpoint's files cannot be checked"
    try:
        files = read_json_object(path / FILE_LIST).get("files")
    except DiffutronError as error:
        return str(error)
    if not isinstance(files, dict):
        return f"{path / FILE_LIST} holds no file list"
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != size:
            return f"{file} is damaged or truncated ({file.stat().st_size} bytes; it was written with {size})"
    return None


def damage(path: Path) -> str | None:
    """Why a complete checkpoint cannot be resumed from (a missing, truncated or corrupt file), or None."""
    problem = missing_files(path)
    if problem is not None:
        return problem
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

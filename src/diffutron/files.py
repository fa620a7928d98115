"""Write files and directories so that a crash never leaves a half-written one in place, and check
destinations before the work so that a bad output path never costs the work or the user's data.

One rule for folders: an output may go under folders that do not exist yet; they are created when
it is written, and `check_destination` (which every command that writes files calls before its
work) says so with one warning naming them, so that a mistyped folder does not go unnoticed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Literal

from diffutron.errors import DiffutronError

TORCH_SUFFIXES = (".pt", ".pth", ".bin")  # torch.save writes zip archives

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside `path`; it replaces `path` only if the block succeeds.

    If the block succeeds but the file cannot be moved into place, it is kept and the error says where.
    """
    path = Path(path)
    with _cannot_write(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it owner-only; a normal file is wanted
    try:
        with os.fdopen(descriptor, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    try:
        os.replace(temporary, path)
    except OSError as error:
        raise DiffutronError(_kept_message(path, temporary, error)) from None


@contextlib.contextmanager
def _cannot_write(path: Path) -> Iterator[None]:
    """An OSError while making room for `path` (a read-only or full disk, no permission) is bad input."""
    try:
        yield
    except OSError as error:
        raise DiffutronError(f"cannot write {path} ({error.strerror or error}); choose another place") from None


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `path`, renamed to `path` when the block succeeds.

    An existing `path` (with `overwrite`) is moved aside first and deleted only once the new one is in
    place; if the move fails, the old one is put back and the finished result is kept (the error says where).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    with _cannot_write(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(temporary, 0o777 & ~_umask())
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    old = None
    try:
        if path.exists():
            old = path.with_name(f"{temporary.name}.old")
            os.replace(path, old)
        os.replace(temporary, path)
    except OSError as error:
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)
        raise DiffutronError(_kept_message(path, temporary, error)) from None
    if old is not None and old.is_dir():
        shutil.rmtree(old)
    elif old is not None:
        old.unlink()


def check_destination(
    path: str | Path,
    *,
    overwrite: bool = False,
    flag: str | None = "--overwrite",
    kind: Literal["directory", "file"] = "directory",
    inputs: Iterable[str | Path | None] = (),
) -> Path:
    """Refuse, before any work, an output path that would fail at the end or destroy data.

    Refused: a file where a directory is wanted (or the reverse), even with `overwrite`; a
    destination that is, holds or lies inside one of `inputs` (writing there would replace or delete
    the input); an existing destination without `overwrite` (the message names `flag`; None: no flag
    can allow it); a place that cannot be written (parent is a file, or no write permission, tried
    with a real temporary file so read-only file systems count too). Folders above `path` that do
    not exist are named in a warning: writing creates them. Returns `path` as a Path.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if kind == "directory" and not path.is_dir():
            raise DiffutronError(f"{path} is a file, not a directory; choose a directory path for the output")
        if kind == "file" and path.is_dir():
            raise DiffutronError(f"{path} is a directory, not a file; choose a file path for the output")
    target = path.resolve()
    for source in inputs:
        if not source or not Path(source).exists():  # "" and None: not set; hub ids: not local
            continue
        resolved = Path(source).resolve()
        if resolved == target or target in resolved.parents:
            raise DiffutronError(
                f"{path} holds the input {source}: writing the output there would delete it; choose another output"
            )
        if resolved in target.parents:
            raise DiffutronError(f"{path} lies inside the input {source}; choose an output outside it")
    if path.exists() and not overwrite:
        how = f"choose another output or pass {flag}" if flag else "choose another output"
        raise DiffutronError(f"{path} already exists; {how}")
    _check_writable(path)
    return path


def _check_writable(path: Path) -> None:
    """The nearest existing folder above `path` must be a folder we can create files in; the folders
    between them are named in a warning (writing creates them)."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DiffutronError(f"cannot write {path}: {ancestor} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=ancestor, prefix=".diffutron-write-test."):
            pass
    except OSError as error:
        raise DiffutronError(f"cannot write {path}: {ancestor} is not writable ({error.strerror or error})") from None
    if ancestor != path.absolute().parent:
        logger.warning("the folder %s does not exist: it will be created for %s", path.parent, path)


def file_damage(path: str | Path) -> str | None:
    """Why a safetensors, JSON or torch.save file is unreadable (truncated, corrupt), or None if it reads.

    Cheap: safetensors checks its header against the file size, a torch zip archive its directory at
    the end of the file (both are lost by truncation); JSON is parsed. Other files are not checked.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt"):
                pass
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in TORCH_SUFFIXES:
            with zipfile.ZipFile(path):
                pass
    except (OSError, ValueError, zipfile.BadZipFile, SafetensorError) as error:
        return f"{path} is damaged or truncated ({error})"
    return None


def read_json_object(path: Path, remedy: str = "") -> dict:
    """A JSON file holding one object; unreadable or other JSON is an error naming the file (and `remedy`)."""
    suffix = f"; {remedy}" if remedy else ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DiffutronError(f"{path} cannot be read ({error}){suffix}") from None
    if not isinstance(data, dict):
        raise DiffutronError(f"{path} is not a JSON object{suffix}")
    return data


def _kept_message(path: Path, temporary: str | Path, error: OSError) -> str:
    reason = error.strerror or error
    return f"could not move the finished output into place at {path} ({reason}); it is kept at {temporary}"


def is_local_path(name: str | Path) -> bool:
    """Whether `name` can only mean a local path, not a hub id (`owner/name` or `name`).

    It exists here, starts with `.`, `/` or `~`, is not a valid hub id (more than one slash, a
    space, a backslash ...), or starts inside a local directory (`runs/final` when `runs/` exists).
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = str(name)
    if Path(text).expanduser().exists() or text.startswith((".", "/", "~")):
        return True
    try:
        validate_repo_id(text)
    except HFValidationError:
        return True
    return "/" in text and Path(text.split("/", 1)[0]).is_dir()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current

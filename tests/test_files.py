"""Atomic writes: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diffutron.errors import DiffutronError
from diffutron.files import atomic_directory, atomic_file, check_destination, file_damage


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write("new")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_file(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(target) == 0o666 & ~umask


def test_atomic_directory(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_directory(target) as work:
        (work / "a").write_text("x")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as work:
        (work / "a").write_text("x")
    assert (target / "a").read_text() == "x"
    assert _mode(target) & 0o055 == 0o055 & ~_umask_now()
    with pytest.raises(FileExistsError):
        with atomic_directory(target):
            pass


def _umask_now():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_atomic_directory_replaces_an_old_one_only_once_the_new_one_is_in_place(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("old")
    real_replace = os.replace

    def no_space(source, destination):
        if Path(destination) == target and Path(source).name.endswith(".tmp"):
            raise OSError(28, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(DiffutronError, match=r"could not move the finished output into place .* it is kept at"):
        with atomic_directory(target, overwrite=True) as work:
            (work / "new").write_text("new")
    assert (target / "old").read_text() == "old"  # the old output is back
    kept = [path for path in tmp_path.iterdir() if path != target]
    assert len(kept) == 1 and (kept[0] / "new").read_text() == "new"  # the new one is kept, as said

    monkeypatch.setattr(os, "replace", real_replace)
    with atomic_directory(target, overwrite=True) as work:
        (work / "new").write_text("new")
    assert [path.name for path in target.iterdir()] == ["new"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["out", kept[0].name])  # nothing else left


def _file(tmp: Path) -> Path:
    (tmp / "file.txt").write_text("x")
    return tmp / "file.txt"


def _folder(tmp: Path) -> Path:
    (tmp / "folder").mkdir()
    return tmp / "folder"


# each row: (name, setup(tmp) -> (destination, check_destination keyword arguments), fragment or None if accepted)
DESTINATIONS = [
    ("new directory", lambda tmp: (tmp / "new", {}), None),
    ("new file", lambda tmp: (tmp / "new.txt", {"kind": "file"}), None),
    ("existing directory", lambda tmp: (_folder(tmp), {}), "already exists; choose another output or pass --overwrite"),
    ("existing, other flag", lambda tmp: (_folder(tmp), {"flag": "--force"}), "or pass --force"),
    ("existing, no flag", lambda tmp: (_folder(tmp), {"flag": None}), "already exists; choose another output"),
    ("existing, overwrite", lambda tmp: (_folder(tmp), {"overwrite": True}), None),
    ("file for a directory", lambda tmp: (_file(tmp), {"overwrite": True}), "is a file, not a directory"),
    ("directory for a file", lambda tmp: (_folder(tmp), {"kind": "file", "overwrite": True}), "is a directory, not a"),
    ("under a file", lambda tmp: (_file(tmp) / "out", {}), "is a file, not a directory"),
    ("unwritable", lambda tmp: (Path("/sys/diffutron-test-output"), {}), "is not writable"),
    ("is an input", lambda tmp: (_folder(tmp), {"overwrite": True, "inputs": [tmp / "folder"]}), "holds the input"),
    (
        "holds an input",
        lambda tmp: (tmp, {"overwrite": True, "inputs": [_folder(tmp) / "deep", _file(tmp)]}),
        "holds the input",
    ),
    ("inside an input", lambda tmp: (_folder(tmp) / "out", {"inputs": [tmp / "folder"]}), "lies inside the input"),
    ("beside an input", lambda tmp: (tmp / "out", {"inputs": [_file(tmp), "", None, "hub/id"]}), None),
]


@pytest.mark.parametrize(("setup", "fragment"), [row[1:] for row in DESTINATIONS], ids=[row[0] for row in DESTINATIONS])
def test_check_destination(tmp_path, setup, fragment):
    destination, options = setup(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    if fragment is None:
        assert check_destination(destination, **options) == destination
    else:
        with pytest.raises(DiffutronError, match=re.escape(fragment)):
            check_destination(destination, **options)
    assert sorted(tmp_path.rglob("*")) == before  # checking writes nothing that stays


MISSING_FOLDERS = [
    # name, destination under tmp, keyword arguments, the folder the warning names (None: no warning)
    ("file in a new folder", "new/out.jsonl", {"kind": "file"}, "new"),
    ("file two folders down", "a/b/out.jsonl", {"kind": "file"}, "a/b"),
    ("new directory in a new folder", "runs/exp1", {}, "runs"),
    ("new directory here", "exp1", {}, None),
    ("file here", "out.jsonl", {"kind": "file"}, None),
]


@pytest.mark.parametrize(
    ("destination", "options", "folder"), [row[1:] for row in MISSING_FOLDERS], ids=[row[0] for row in MISSING_FOLDERS]
)
def test_folders_that_do_not_exist_are_named_in_one_warning(tmp_path, caplog, destination, options, folder):
    """The one rule of every command that writes files: missing folders are created, and it says so first."""
    with caplog.at_level("WARNING", logger="diffutron.files"):
        check_destination(tmp_path / destination, **options)
    expected = [] if folder is None else [f"the folder {tmp_path / folder} does not exist: it will be created for "]
    assert [record.getMessage()[: len(expected[0])] for record in caplog.records] == expected
    assert list(tmp_path.iterdir()) == []  # created when written, not when checked


@pytest.mark.parametrize("write", [lambda path: atomic_file(path), lambda path: atomic_directory(path)])
def test_a_place_that_cannot_be_written_is_a_clear_error(write):
    """The folder cannot be made or written (read-only, no permission): one line, not an OSError."""
    target = Path("/sys/diffutron-test-output/answer.gif")
    with pytest.raises(DiffutronError, match=re.escape(f"cannot write {target} (")):
        with write(target):
            pass


def _torch_file(tmp: Path) -> Path:
    torch.save({"a": torch.ones(3)}, tmp / "state.pt")
    return tmp / "state.pt"


def _safetensors_file(tmp: Path) -> Path:
    save_file({"a": torch.ones(64)}, tmp / "model.safetensors")
    return tmp / "model.safetensors"


def _json_file(tmp: Path) -> Path:
    (tmp / "state.json").write_text('{"step": 4}')
    return tmp / "state.json"


@pytest.mark.parametrize("make", [_torch_file, _safetensors_file, _json_file])
def test_file_damage_finds_truncation(tmp_path, make):
    path = make(tmp_path)
    assert file_damage(path) is None
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 3])
    assert file_damage(path).startswith(f"{path} is damaged or truncated")

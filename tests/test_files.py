"""Atomic writes: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from diffutron.files import atomic_directory, atomic_file


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

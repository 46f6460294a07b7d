"""mailnet.durable: atomic, durable writes and their helpers."""

import errno
import os

import pytest

from mailnet import durable


def test_write_atomically_replaces_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "f")
    durable.writeAtomically(path, b"one", mode=0o600)
    durable.writeAtomically(path, b"two", mode=0o600, datasync=True)
    assert open(path, "rb").read() == b"two"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_write_atomically_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "f")
    durable.writeAtomically(path, b"old")

    def failing(*a):
        raise OSError(errno.ENOSPC, "full")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        durable.writeAtomically(path, b"new")
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_append_durably_cuts_a_partial_line(tmp_path):
    path = str(tmp_path / "log")
    open(path, "wb").write(b"line 1\npartial")
    size, inode = durable.appendDurably(path, b"line 2\n", expectOffset=7)
    assert open(path, "rb").read() == b"line 1\nline 2\n"
    assert (size, inode) == (14, os.stat(path).st_ino)
    durable.appendDurably(path, b"line 3\n")
    assert open(path, "rb").read().endswith(b"line 2\nline 3\n")


def test_write_all_and_create_exclusive(tmp_path):
    path = str(tmp_path / "x")
    fd = durable.createExclusive(path)
    try:
        durable.writeAll(fd, b"a" * 100000)
    finally:
        os.close(fd)
    assert os.path.getsize(path) == 100000
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        durable.createExclusive(path)


def test_link_or_copy(tmp_path, monkeypatch):
    src, dst, tmp = (str(tmp_path / n) for n in ("src", "dst", "tmp"))
    open(src, "wb").write(b"data")
    durable.linkOrCopy(src, dst, tmp)
    assert os.stat(dst).st_ino == os.stat(src).st_ino

    def crossDevice(a, b):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", crossDevice)
    durable.linkOrCopy(src, dst + "2", tmp)
    assert open(dst + "2", "rb").read() == b"data"
    assert os.stat(dst + "2").st_ino != os.stat(src).st_ino
    assert not os.path.exists(tmp)


def test_file_stamp_changes_when_the_file_is_replaced(tmp_path):
    path = str(tmp_path / "users")
    assert durable.fileStamp(path) is None
    durable.writeAtomically(path, b"a")
    first = durable.fileStamp(path)
    durable.writeAtomically(path, b"a")
    assert first is not None and durable.fileStamp(path) != first
    durable.fsyncDirectory(str(tmp_path))

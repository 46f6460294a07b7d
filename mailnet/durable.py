"""
Durable file I/O: what a crash or power cut may not undo.

A file is durable once its data is fsynced *and* the directory entry that
names it is (the fsync of the directory): :func:`writeAtomically` does
both, so readers see the old or the new content, never a mix, and the new
content survives a crash once it returns.  Everything here blocks: call it
from a worker thread or a command-line tool, not from the reactor.

Used by the users and aliases files (:mod:`mailnet.auth`), TLS material
(:mod:`mailnet.tls`), the service's run files, the queue spool and the
Maildir store.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile


def writeAtomically(path, data: bytes, mode=0o644, datasync=False):
    """
    Write a file so that readers see the old or the new content, durably:
    a temporary file next to it, fsync (``fdatasync`` when ``datasync``),
    rename over ``path``, fsync of the directory.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if datasync:
                os.fdatasync(f.fileno())
            else:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsyncDirectory(directory)


def fsyncDirectory(directory):
    """Make the names in ``directory`` (a file created, renamed, removed) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The Maildir store's name for it.
fsyncDir = fsyncDirectory


def writeAll(fd, data: bytes):
    """``os.write`` until all of ``data`` is written (writes may be short)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def appendDurably(path, data: bytes, expectOffset=None):
    """
    Append ``data`` to the existing file ``path`` and fdatasync.  When
    ``expectOffset`` is given and the file is longer (a partial line left by
    a crashed writer), the excess is cut first.  Returns ``(size, inode)``.
    """
    fd = os.open(path, os.O_WRONLY)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        if expectOffset is not None and end > expectOffset:
            os.ftruncate(fd, expectOffset)
            end = expectOffset
        os.lseek(fd, end, os.SEEK_SET)
        writeAll(fd, data)
        os.fdatasync(fd)
        return end + len(data), os.fstat(fd).st_ino
    finally:
        os.close(fd)


def createExclusive(path, mode=0o600) -> int:
    """
    Create ``path`` for writing and return its descriptor; FileExistsError
    if the name is taken (a temporary file must never be shared).
    """
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)


def linkOrCopy(src, dst, tmp):
    """
    Hard-link ``src`` as ``dst``; across file systems (or where links are
    not allowed) copy it to ``tmp``, fsync, and rename that to ``dst``.
    ``tmp`` must be on the file system of ``dst``.  The caller fsyncs the
    directory of ``dst``.
    """
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, dst)


def fileStamp(path):
    """
    ``(inode, size, mtime_ns)`` of ``path``, or None when it does not
    exist: changes whenever the file is rewritten (even by a rename over
    it), so a cached parse can be reused while the stamp is the same.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def readJSONObject(path, maxSize):
    """
    The JSON object kept in ``path`` (a dict), or None when there is no
    file.  A file that is not one (larger than ``maxSize`` bytes, not JSON,
    not an object) is set aside as ``path.corrupt`` and ValueError is
    raised for the caller to log: a damaged file is reported, never a crash.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(maxSize + 1)
    except FileNotFoundError:
        return None
    try:
        if len(data) > maxSize:
            raise ValueError("too large")
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return value
    except ValueError:
        os.replace(path, path + ".corrupt")
        raise

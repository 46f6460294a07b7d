"""
Uploaded blobs (RFC 8620 s6.1) under ``<data_dir>/blobs/<accountId>/``.

A blob is one file named by its id, ``G`` + the SHA-256 of its bytes (ids
are opaque to clients; the same bytes uploaded twice are one file).  Each
upload is written to ``tmp/``, fsynced, renamed into place and the
directory fsynced before the client hears 201 (mailnet.durable), so an
answered upload survives a crash.  Uploads expire ``[http] blob_expiry``
seconds after their last upload or copy (RFC 8620 s6.1: at least an hour);
an expired blob is not found and is removed by the hourly sweep.

Names never leave the directory: account and blob ids are checked against
the JMAP id alphabet (``[A-Za-z0-9_-]``) before they touch a path.  The
file work runs in a thread (``deferToThread``); the reactor only waits.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time

from twisted.internet import threads
from zope.interface import implementer

from mailnet.durable import createExclusive, fsyncDirectory, linkOrCopy, writeAll
from mailnet.jmap.blobs import Blob, IBlobSource
from mailnet.jmap.core import isId
from mailnet.logs import Logger

log = Logger()

CHUNK = 256 * 1024


@implementer(IBlobSource)
class UploadStore:
    """
    @param root: ``<data_dir>/blobs``.
    @param expiry: seconds an upload is kept.
    @param runInThread: ``f(callable, *args) -> Deferred`` (tests pass one
        that runs at once).
    """

    def __init__(self, root, expiry, runInThread=None, now=time.time):
        self.root = root
        self.expiry = expiry
        self.now = now
        self.runInThread = runInThread or threads.deferToThread

    def _dir(self, accountId):
        if not isId(accountId):
            raise ValueError("bad account id")
        return os.path.join(self.root, accountId)

    def _path(self, accountId, blobId):
        if not (isId(blobId) and blobId.startswith("G")):
            return None
        return os.path.join(self._dir(accountId), blobId)

    # Saving

    def save(self, accountId, source, type=None):
        """
        Copy the readable binary file ``source`` (from its current position)
        into the account's blobs, durably.  Deferred firing with
        ``(blobId, size)``.  ``type`` (the upload's Content-Type) is not
        kept here: a found blob is ``application/octet-stream`` (the
        PostgreSQL store, mailnet/store/postgres/uploads.py, keeps it).
        """
        return self.runInThread(self._save, accountId, source)

    def _save(self, accountId, source):
        directory = self._dir(accountId)
        tmpDir = os.path.join(directory, "tmp")
        os.makedirs(tmpDir, mode=0o700, exist_ok=True)
        tmp = os.path.join(tmpDir, secrets.token_hex(8))
        digest = hashlib.sha256()
        size = 0
        fd = createExclusive(tmp)
        try:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                writeAll(fd, chunk)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        blobId = "G" + digest.hexdigest()
        final = os.path.join(directory, blobId)
        os.replace(tmp, final)  # the same bytes: replacing an older copy is harmless
        fsyncDirectory(directory)
        return blobId, size

    # IBlobSource

    def find(self, accountId, blobId):
        return self.runInThread(self._find, accountId, blobId)

    def _find(self, accountId, blobId):
        path = self._path(accountId, blobId)
        if path is None:
            return None
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if self.now() - st.st_mtime > self.expiry:
            return None
        return Blob(blobId, st.st_size, "application/octet-stream", lambda: open(path, "rb"))

    def copy(self, fromAccountId, toAccountId, blobId):
        return self.runInThread(self._copy, fromAccountId, toAccountId, blobId)

    def _copy(self, fromAccountId, toAccountId, blobId):
        if self._find(fromAccountId, blobId) is None:
            return False
        directory = self._dir(toAccountId)
        tmpDir = os.path.join(directory, "tmp")
        os.makedirs(tmpDir, mode=0o700, exist_ok=True)
        target = os.path.join(directory, blobId)
        if os.path.exists(target):
            os.utime(target)
            return True
        linkOrCopy(self._path(fromAccountId, blobId), target, os.path.join(tmpDir, secrets.token_hex(8)))
        os.utime(target)  # the copy lives as long as a new upload
        fsyncDirectory(directory)
        return True

    # Expiry

    def sweep(self):
        """Remove expired uploads and stale temporary files (Deferred: how many)."""
        return self.runInThread(self._sweep)

    def _sweep(self):
        removed = 0
        now = self.now()
        try:
            accounts = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        for accountId in accounts:
            if not isId(accountId):
                continue
            directory = os.path.join(self.root, accountId)
            for sub in (directory, os.path.join(directory, "tmp")):
                try:
                    names = os.listdir(sub)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for name in names:
                    path = os.path.join(sub, name)
                    try:
                        st = os.lstat(path)
                        if os.path.isfile(path) and now - st.st_mtime > self.expiry:
                            os.unlink(path)
                            removed += 1
                    except OSError:
                        continue
        if removed:
            log.info("jmap: removed {count} expired uploads", count=removed)
        return removed

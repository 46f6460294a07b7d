"""Deliveries and APPENDs: collecting a message on the reactor side."""

from __future__ import annotations

import errno
import os
import time

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailnet.durable import writeAll
from mailnet.store.base import normalizeFlags, normalizeFolderName
from mailnet.store.interfaces import (
    INBOX,
    SPECIAL_USE,
    IDelivery,
    NoSuchFolder,
    StorageFull,
    StoreError,
    TemporaryStoreError,
)
from mailnet.store.maildir import tuning
from mailnet.store.maildir.layout import folderDirName
from mailnet.store.maildir.names import newBase

log = Logger()


class Job:
    """One message on its way: its tmp file, its data and its targets."""

    __slots__ = ("tmpPath", "base", "bases", "size", "date", "flags", "targets", "fd", "data", "error")

    def __init__(self):
        self.tmpPath = None
        self.fd = -1
        self.data = b""
        self.error = None
        self.bases = ()

    def baseFor(self, idx):
        """
        The base name of the copy for target ``idx``: every copy is a
        message of its own, with its own name, so its own GUID and email
        id (JMAP: an Email is in one mailbox).
        """
        return self.bases[idx] if idx else self.base


@implementer(IDelivery)
class MaildirDelivery:
    """
    Collects the body in memory; past ``BUFFER`` bytes it streams it into
    ``<root>/.tmp/<name>`` (a file made ahead of time).  :meth:`commit`
    hands it to the group committer, which writes what is left (the whole
    message, for most), fsyncs it and links it into every recipient folder
    -- in a worker thread, so that the reactor does no file I/O for a
    message that fits in the buffer.
    """

    BUFFER = 1 << 17  # most messages fit: the reactor writes nothing

    def __init__(self, store):
        self._store = store
        self._targets = []  # (username, folderName, path)
        self._job = None
        self._buffer = bytearray()
        self._size = 0
        self._done = False

    def addRecipient(self, username, folder=INBOX):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        name = normalizeFolderName(folder)
        accountPath = self._store.accountPath(username)
        # INBOX is the account directory, made at commit if missing: no
        # need to look at the disk (which can wait behind fsyncs).
        if name != INBOX:
            path = os.path.join(accountPath, folderDirName(name))
            if not os.path.isdir(os.path.join(path, "cur")):
                accountExists = os.path.isdir(os.path.join(accountPath, "cur"))
                if accountExists or name not in SPECIAL_USE:
                    raise NoSuchFolder(folder)
        else:
            path = accountPath
        for t in self._targets:
            if t[2] == path:
                return
        self._targets.append((username, name, path))

    def addFolder(self, name, path):
        """A target by folder path (APPEND: the folder is open, so it exists)."""
        self._targets.append((None, name, path))

    def _open(self):
        job = Job()
        try:
            job.tmpPath, job.fd = self._store.tmp.take()
        except OSError as e:
            log.error("maildir: cannot create a delivery file: {error}", error=ioText(e))
            raise storeError(e) from e
        self._job = job

    def _flushBuffer(self):
        if self._buffer:
            if self._job is None:
                self._open()
            try:
                writeAll(self._job.fd, self._buffer)
            except OSError as e:
                log.error("maildir: writing a delivery failed: {error}", error=ioText(e))
                raise storeError(e) from e
            self._buffer = bytearray()

    def write(self, data):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        self._buffer += data
        self._size += len(data)
        if len(self._buffer) >= self.BUFFER:
            self._flushBuffer()

    def commit(self, internalDate=None, flags=()):
        if self._done:
            return defer.fail(StoreError("delivery already committed or aborted"))
        self._done = True
        if not self._targets:
            self._cleanup()
            return defer.succeed([])
        job = self._job or Job()
        self._job = None
        job.data = self._buffer  # written by the committer's thread
        self._buffer = bytearray()
        job.size = self._size
        job.date = float(time.time() if internalDate is None else internalDate)
        job.flags = normalizeFlags(flags)
        job.targets = list(self._targets)
        job.base = f"{newBase()},S={job.size},W={job.size}"
        if len(job.targets) > 1:
            job.bases = [job.base] + [f"{newBase()},S={job.size},W={job.size}" for _ in job.targets[1:]]
        if job.tmpPath is None:
            job.tmpPath = os.path.join(self._store.tmp.directory, job.base)
        return self._store.committer.submit(job)

    def _cleanup(self):
        job, self._job = self._job, None
        self._buffer = bytearray()
        if job is not None:
            if job.fd >= 0:
                os.close(job.fd)
                job.fd = -1
            try:
                os.unlink(job.tmpPath)
            except FileNotFoundError:
                pass

    def abort(self):
        self._done = True
        self._cleanup()


def appendMessage(store, name, path, source, flags, internalDate):
    """APPEND: the same path as a delivery, to one folder.  Fires with the UID."""
    delivery = MaildirDelivery(store)
    delivery.addFolder(name, path)

    def write():
        if isinstance(source, (bytes, bytearray, memoryview)):
            delivery.write(bytes(source))
        else:
            while True:
                chunk = source.read(1 << 16)
                if not chunk:
                    break
                delivery.write(chunk)

    try:
        write()
    except BaseException:
        delivery.abort()
        return defer.fail()
    d = delivery.commit(internalDate, flags)

    return d.addCallback(lambda result: result[0][2])


def createTmpFiles(directory, n):
    """(Thread.)  ``n`` new empty files in ``directory``: ``[(path, fd)]``."""
    out = []
    for _ in range(n):
        path = os.path.join(directory, newBase())
        out.append((path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)))
    return out


class TmpPool:
    """
    ``<root>/.tmp``: empty files for deliveries, made ahead of time in a
    thread: creating a file can wait for the file system journal, which the
    reactor must not do.
    """

    def __init__(self, directory, run):
        self.directory = directory
        self._run = run
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._files = []  # (path, fd) of empty files, ready for use
        self._refilling = False
        self._cleaned = False

    def take(self):
        """``(path, fd)`` of a new empty file."""
        pool = self._files
        if len(pool) <= tuning.TMP_POOL_LOW and not self._refilling:
            self._refilling = True
            d = self._run(createTmpFiles, self.directory, tuning.TMP_POOL_SIZE - len(pool))
            d.addCallback(pool.extend)
            d.addErrback(lambda f: log.failure("making files in {dir}", f, dir=self.directory))
            d.addBoth(lambda _: setattr(self, "_refilling", False))
        if pool:
            return pool.pop()
        return createTmpFiles(self.directory, 1)[0]

    def drop(self):
        """Remove the files made ahead (at close)."""
        pool, self._files[:] = list(self._files), []
        for path, fd in pool:
            os.close(fd)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def cleanOnce(self):
        """At the first delivery: remove what crashed processes left."""
        if not self._cleaned:
            self._cleaned = True
            self._run(self._clean).addErrback(lambda f: log.failure("cleaning {dir}", f, dir=self.directory))

    def _clean(self):
        """Leftovers of crashed processes (not of live ones: by age)."""
        now = time.time()
        for entry in os.scandir(self.directory):
            try:
                st = entry.stat()
                age = now - st.st_mtime
                if age > tuning.TMP_MAX_AGE or (st.st_size == 0 and age > 3600):
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass


def ioText(error):
    """An OSError for a log line or an answer: the errno name, never the path."""
    name = errno.errorcode.get(error.errno, "") if error.errno else ""
    text = error.strerror or type(error).__name__
    return f"{name} ({text})" if name else text


def storeError(error):
    """What a failed commit hands its caller: a StoreError without paths."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull("mail storage is full")
    if isinstance(error, OSError):
        return TemporaryStoreError("storage error: " + ioText(error))
    return TemporaryStoreError(type(error).__name__)

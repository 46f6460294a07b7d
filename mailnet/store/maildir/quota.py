"""
The Maildir++ quota file, ``maildirsize``, as Courier and Dovecot keep it.

The file sits in the account directory (next to INBOX's ``cur``)::

    1073741824S,10000C          the limits: bytes (S) and messages (C)
         1843200        120     a recalculated total
            4096          1     one line per change: bytes and messages
           -4096         -1     (negative for removals)

Writers append one line per change with a single ``O_APPEND`` write (no
directory scan: cheap on the delivery path); the usage is the sum of the
lines after the header.  The file is recalculated (the folders scanned,
written to a temporary file and renamed over it) when it is missing,
cannot be read, has other limits in its header than the user's, is 5120
bytes or larger, or is older than 15 minutes while it shows the account
over quota (the Maildir++ specification's rules, which Dovecot follows).

Sizes are the ``S=`` of the file names (the file size; stat when absent),
as in Courier and Dovecot.  A user without limits has no file made for
them; an existing one is still kept up to date.
"""

from __future__ import annotations

import os
import re
import threading
import time

from twisted.logger import Logger

from mailnet.durable import fsyncDir, writeAtomically
from mailnet.store.maildir.layout import TMP_DIR
from mailnet.store.maildir.names import sizesFromBase, splitName
from mailnet.store.quota import QuotaLimits

log = Logger()

FILE_NAME = "maildirsize"
MAX_FILE = 5120  # bytes: past it, recalculate (Maildir++ quota spec)
MAX_AGE = 15 * 60  # seconds: an over-quota file older than this is recalculated
WARNED = "mailnet-quota-warned"  # the warning was sent for this crossing

_HEADER_PART = re.compile(rb"^(\d{1,20})([SC])$")
_LINE = re.compile(rb"^\s*(-?\d{1,20})\s+(-?\d{1,20})\s*$")


def parseMaildirsize(data: bytes):
    """
    ``(limits, storage, messages, lines)`` of a ``maildirsize`` file's
    bytes, or None when it cannot be trusted (no header, a line that is not
    two numbers, a last line without its newline: a writer that crashed).
    Never raises.
    """
    if not data.endswith(b"\n"):
        return None
    lines = data[:-1].split(b"\n")
    header = lines[0].strip()
    storage = count = 0
    if header:
        for part in header.split(b","):
            m = _HEADER_PART.match(part.strip())
            if m is None:
                return None
            if m.group(2) == b"S":
                storage = int(m.group(1))
            else:
                count = int(m.group(1))
    usedBytes = usedCount = 0
    for line in lines[1:]:
        m = _LINE.match(line)
        if m is None:
            return None
        usedBytes += int(m.group(1))
        usedCount += int(m.group(2))
    if usedBytes < 0 or usedCount < 0:
        return None
    return QuotaLimits(storage, count), usedBytes, usedCount, len(lines) - 1


def renderHeader(limits: QuotaLimits) -> bytes:
    """The first line: ``1073741824S,10000C`` (a part only for a limit that is set)."""
    parts = []
    if limits.storage:
        parts.append(b"%dS" % limits.storage)
    if limits.messages:
        parts.append(b"%dC" % limits.messages)
    return b",".join(parts or [b"0S", b"0C"]) + b"\n"


def deltaLine(storage: int, messages: int) -> bytes:
    return b"%12d %12d\n" % (storage, messages)


def sameLimits(a: QuotaLimits, b: QuotaLimits) -> bool:
    return a.storage == b.storage and a.messages == b.messages


def scanAccount(path):
    """
    (Thread.)  ``(bytes, messages)`` of every message of the account at
    ``path``: INBOX and every Maildir++ folder (``.Name``), ``cur`` and
    ``new``; mailnet's own hidden directories (``..mailnet-*``, ``.tmp``)
    are left out.
    """
    total = count = 0
    dirs = [path]
    try:
        with os.scandir(path) as it:
            for entry in it:
                name = entry.name
                if name[:1] == "." and name[:2] != ".." and name != TMP_DIR and entry.is_dir(follow_symlinks=False):
                    dirs.append(entry.path)
    except FileNotFoundError:
        return 0, 0
    for folder in dirs:
        for sub in ("cur", "new"):
            try:
                it = os.scandir(os.path.join(folder, sub))
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for entry in it:
                    if entry.name[:1] == ".":
                        continue
                    sizes = sizesFromBase(splitName(entry.name)[0])
                    if sizes is not None and sizes[0] is not None:
                        size = sizes[0]
                    else:
                        try:
                            size = entry.stat().st_size
                        except FileNotFoundError:
                            continue
                    total += size
                    count += 1
    return total, count


class MaildirQuota:
    """
    The usage of each account (thread-safe): read from ``maildirsize``
    (cached by the file's stamp), changed by appending a line,
    recalculated by a scan in a worker thread.
    """

    def __init__(self, clock=time.time):
        self._cache = {}  # account path -> (stamp, (limits, bytes, count))
        self._lock = threading.Lock()
        self._accountLocks = {}
        self.clock = clock

    def _accountLock(self, path):
        with self._lock:
            lock = self._accountLocks.get(path)
            if lock is None:
                lock = self._accountLocks[path] = threading.Lock()
            return lock

    def cached(self, path, limits):
        """
        ``(bytes, messages)`` from the file when it can be used as it is,
        else None (missing, corrupt, stale: it needs :meth:`usage`).
        Reads at most one small file; no directory scan.  Used on the
        reactor (SMTP's RCPT check).
        """
        filePath = os.path.join(path, FILE_NAME)
        try:
            st = os.stat(filePath)
        except OSError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == stamp:
            parsed = hit[1]
        else:
            if st.st_size >= MAX_FILE:
                return None
            try:
                with open(filePath, "rb") as f:
                    data = f.read(MAX_FILE)
            except OSError:
                return None
            parsed = parseMaildirsize(data)
            if parsed is None:
                return None
            parsed = parsed[:3]
            self._cache[path] = (stamp, parsed)
        fileLimits, used, count = parsed
        if not sameLimits(fileLimits, limits):
            return None
        if (limits.storage and used >= limits.storage) or (limits.messages and count >= limits.messages):
            if self.clock() - st.st_mtime > MAX_AGE:
                return None  # over quota by an old count: recount (Maildir++)
        return used, count

    def usage(self, path, limits):
        """
        (Thread.)  ``(bytes, messages)`` of the account at ``path``,
        recalculating ``maildirsize`` when it cannot be used as it is (for
        a user without limits: a scan, and no file made).
        """
        found = self.cached(path, limits)
        if found is not None:
            return found
        with self._accountLock(path):
            found = self.cached(path, limits)
            if found is not None:
                return found
            if not os.path.isdir(path):
                return 0, 0  # no account yet: nothing used, no file made
            used, count = scanAccount(path)
            filePath = os.path.join(path, FILE_NAME)
            if limits.limited or os.path.exists(filePath):
                if os.path.exists(filePath):
                    log.info("maildir quota of {account}: recalculated ({bytes} bytes, {count} messages)",
                             account=os.path.basename(path), bytes=used, count=count)
                try:
                    writeAtomically(filePath, renderHeader(limits) + deltaLine(used, count), mode=0o600)
                except OSError as e:
                    log.warn("maildir quota: cannot write maildirsize: {error}", error=e.strerror)
            return used, count

    def changed(self, path, storage, messages):
        """
        (Thread.)  Messages were added (positive) or removed (negative) in
        the account at ``path``: one line appended to its ``maildirsize``
        when it has one.  Never raises (a lost line costs a recount only).
        """
        if not storage and not messages:
            return
        filePath = os.path.join(path, FILE_NAME)
        # Under the account's lock: a recount of ours (tmp + rename) never
        # loses a line of ours written meanwhile (another program's may be:
        # the Maildir++ spec accepts that, the next recount fixes it).
        with self._accountLock(path):
            try:
                fd = os.open(filePath, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                return
            except OSError:
                log.warn("maildir quota: cannot open maildirsize of {account}", account=os.path.basename(path))
                return
            try:
                os.write(fd, deltaLine(storage, messages))
            except OSError:
                log.warn("maildir quota: cannot append to maildirsize of {account}", account=os.path.basename(path))
            finally:
                os.close(fd)

    def invalidate(self, path):
        """(Thread.)  A folder went away: recount next time."""
        try:
            os.unlink(os.path.join(path, FILE_NAME))
        except FileNotFoundError:
            pass
        self._cache.pop(path, None)

    # The warning mark (one warning per crossing of the threshold)

    def claimWarning(self, path, warned):
        """
        (Thread.)  ``warned``: the usage is at or past the threshold.  True
        when the mark was made now (so a warning is due); the mark is
        removed when the usage is below the threshold.
        """
        mark = os.path.join(path, WARNED)
        if not warned:
            try:
                os.unlink(mark)
            except FileNotFoundError:
                pass
            return False
        try:
            fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsyncDir(path)
        return True


def accountPathOf(folderPath):
    """The account directory of a folder directory (INBOX is the account's)."""
    return os.path.dirname(folderPath) if os.path.basename(folderPath).startswith(".") else folderPath

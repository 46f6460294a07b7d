"""
Dovecot-compatible dot-locking (``<file>.lock``), as in Dovecot's
``file-dotlock.c`` with ``dotlock_use_excl``:

* the lock is a file created with ``O_CREAT|O_EXCL`` holding ``<pid>:<host>``;
* a lock older than 2 seconds whose pid is a dead process on this host is
  stale at once; otherwise a lock is stale when neither it nor the protected
  file changed for ``stale`` seconds (120 for ``dovecot-uidlist``);
* waiting polls with a growing, randomised delay.

Blocking; call it from a worker thread, never from the reactor.
"""

from __future__ import annotations

import os
import random
import socket
import time

from mailnet.store.interfaces import TemporaryStoreError

HOSTNAME = socket.gethostname()
STALE_PID_CHECK_SECS = 2
EMPTY_STALE_SECS = 5


def _pidAlive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Dotlock:
    """
    One held lock.  ``release()`` removes it unless :meth:`replaceTarget`
    already renamed it over the protected file.
    """

    def __init__(self, path, fd, st):
        self.path = path  # the protected file
        self.lockPath = path + ".lock"
        self.fd = fd
        self.ino = st.st_ino
        self.lastTouch = time.monotonic()
        self.held = True

    def touch(self, every=10.0):
        """Refresh the lock's mtime during long work so nobody thinks it stale."""
        now = time.monotonic()
        if now - self.lastTouch >= every:
            self.lastTouch = now
            try:
                os.utime(self.fd)
            except OSError:
                pass

    def writeAndReplace(self, data: bytes):
        """
        Write ``data`` into the lock file, fsync it and rename it over the
        protected file: an atomic replacement that also releases the lock.
        """
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)
        os.rename(self.lockPath, self.path)
        self.held = False
        os.close(self.fd)
        self.fd = -1

    def release(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.held:
            return
        self.held = False
        try:
            st = os.lstat(self.lockPath)
        except FileNotFoundError:
            return
        if st.st_ino == self.ino:
            try:
                os.unlink(self.lockPath)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def acquire(path: str, timeout: float = 122.0, stale: float = 120.0) -> Dotlock:
    """
    Take ``path + ".lock"``.  Raises :class:`TemporaryStoreError` after
    ``timeout`` seconds, FileNotFoundError if the directory is gone.
    """
    lockPath = path + ".lock"
    content = f"{os.getpid()}:{HOSTNAME}".encode()
    deadline = time.monotonic() + timeout
    delay = 0.0005
    lastSeen = None  # (ino, mtime_ns, size) of the lock we are waiting on
    lastChange = 0.0
    while True:
        try:
            fd = os.open(lockPath, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            try:
                os.write(fd, content)
                st = os.fstat(fd)
            except BaseException:
                os.close(fd)
                try:
                    os.unlink(lockPath)
                except OSError:
                    pass
                raise
            return Dotlock(path, fd, st)
        now = time.time()
        try:
            st = os.lstat(lockPath)
        except FileNotFoundError:
            continue
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen != lastSeen:
            # First look: trust the lock's mtime; later changes: now.
            lastChange = st.st_mtime if lastSeen is None else now
            lastSeen = seen
        if _isStale(path, lockPath, st, now, lastChange, stale):
            _override(lockPath, st)
            continue
        if time.monotonic() > deadline:
            # No path: the text reaches logs and may reach clients.
            raise TemporaryStoreError(f"timeout waiting for the lock {os.path.basename(lockPath)}")
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 1.5, 0.1)


def _isStale(path, lockPath, st, now, lastChange, stale):
    if st.st_mtime < now - STALE_PID_CHECK_SECS:
        if st.st_size == 0 and st.st_mtime < now - EMPTY_STALE_SECS:
            # The creator died between O_EXCL and writing its pid (the pid
            # is written right after creation).
            return True
        pid = _readPid(lockPath)
        if pid is not None and pid != os.getpid() and not _pidAlive(pid):
            return True
    if now - lastChange > stale:
        try:
            target = os.stat(path).st_mtime
        except FileNotFoundError:
            target = 0
        return now - target > stale
    return False


def _readPid(lockPath):
    try:
        with open(lockPath, "rb") as f:
            data = f.read(512)
    except OSError:
        return None
    pid, sep, host = data.strip().partition(b":")
    if not sep or host.decode("utf-8", "replace") != HOSTNAME:
        return None
    try:
        pid = int(pid)
    except ValueError:
        return None
    return pid if pid > 0 else None


def _override(lockPath, st):
    try:
        now = os.lstat(lockPath)
    except FileNotFoundError:
        return
    if (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns):
        try:
            os.unlink(lockPath)
        except FileNotFoundError:
            pass
    # Give a racing overrider time to finish before we create ours.
    time.sleep(0.001 + random.random() * 0.01)

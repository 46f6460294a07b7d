"""Serve LF-terminated message files (mutt, Dovecot's default) as CRLF."""

from __future__ import annotations

import errno
import io
import os
import stat

# Message files up to this size are read whole at open (open, fstat, one
# read, close: the descriptor is not kept), converted to CRLF if they have
# bare LFs, and served from a BytesIO.  Larger ones are streamed from the
# file, converted a chunk at a time when needed.
WHOLE_LIMIT = 128 * 1024
CHUNK = 1 << 16


class NotRegularFile(OSError):
    """A name in new/ or cur/ is a directory, fifo, socket or device."""

    def __init__(self, path):
        super().__init__(errno.EINVAL, "not a regular file")


def toCRLF(data: bytes) -> bytes:
    """
    Every LF not preceded by CR becomes CRLF; bare CRs are left alone
    (so ``\\r\\r\\n`` stays as it is), matching
    :func:`mailnet.store.maildir.keywords.canonicalSize`.
    """
    if b"\r" not in data:
        # Only LFs (mutt, procmail, Dovecot's own files): one pass.
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class CRLFReader(io.RawIOBase):
    """
    Wraps a binary file: every LF not preceded by CR comes out as CRLF.
    Bare CRs are left alone, matching
    :func:`mailnet.store.maildir.keywords.canonicalSize`.
    """

    def __init__(self, raw, chunk=CHUNK):
        self._raw = raw
        self._chunk = chunk
        self._pending = b""
        self._offset = 0
        self._prevCR = False

    def readable(self):
        return True

    def _convert(self, data: bytes) -> bytes:
        head = b""
        if self._prevCR and data[:1] == b"\n":
            # The CR of this CRLF ended the previous chunk (and went out as is).
            head, data = b"\n", data[1:]
        self._prevCR = data[-1:] == b"\r" if data else self._prevCR and not head
        return head + toCRLF(data)

    def readinto(self, buffer):
        while self._offset >= len(self._pending):
            data = self._raw.read(self._chunk)
            if not data:
                return 0
            self._pending = self._convert(data)
            self._offset = 0
        start = self._offset
        n = min(len(buffer), len(self._pending) - start)
        buffer[:n] = memoryview(self._pending)[start:start + n]
        self._offset = start + n
        return n

    def close(self):
        if not self.closed:
            self._raw.close()
        super().close()


def openCRLF(raw):
    """A buffered CRLF view of the binary file ``raw``."""
    return io.BufferedReader(CRLFReader(raw), CHUNK)


def readCanonical(path, size):
    """
    Open the message file at ``path`` whose canonical (CRLF) size the index
    says is ``size``, for reading from position 0.

    Small files are read whole (see :data:`WHOLE_LIMIT`) and come back as a
    BytesIO; larger ones as the open file itself when it is stored with CRLF
    already (its size is ``size``), else as a converting reader.  Raises
    OSError (FileNotFoundError when the name is gone; ELOOP for a symlink,
    :class:`NotRegularFile` for anything else that is not a regular file).
    """
    # A symlink is never followed (it could point anywhere, /etc/passwd
    # included) and a fifo must not block the opener: only regular files.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path)
        physical = st.st_size
        if physical <= WHOLE_LIMIT:
            # physical + 1: see the end of the file in the same call.
            data = os.read(fd, physical + 1)
            if len(data) != physical:
                # Changed under us (or a short read): read to the end.
                rest = [data]
                while True:
                    more = os.read(fd, CHUNK)
                    if not more:
                        break
                    rest.append(more)
                data = b"".join(rest)
            return io.BytesIO(data if len(data) == size else toCRLF(data))
        f = os.fdopen(fd, "rb")
        fd = -1
    finally:
        if fd >= 0:
            os.close(fd)
    if physical == size:
        return f
    return openCRLF(f)

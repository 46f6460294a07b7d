"""Serve LF-terminated message files (mutt, Dovecot's default) as CRLF."""

from __future__ import annotations

import io
import os

# LF files up to this size are read and converted whole at open: one
# read(2) and two bytes.replace in C, and the reader is a seekable BytesIO.
# Larger ones are converted as they are read, a chunk at a time.
WHOLE_LIMIT = 256 * 1024
CHUNK = 1 << 16


def toCRLF(data: bytes) -> bytes:
    """
    Every LF not preceded by CR becomes CRLF; bare CRs are left alone
    (so ``\\r\\r\\n`` stays as it is), matching
    :func:`mailnet.store._maildirfiles.canonicalSize`.
    """
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class CRLFReader(io.RawIOBase):
    """
    Wraps a binary file: every LF not preceded by CR comes out as CRLF.
    Bare CRs are left alone, matching
    :func:`mailnet.store._maildirfiles.canonicalSize`.
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
    return io.BufferedReader(CRLFReader(raw), CHUNK)


def canonicalReader(f, size):
    """
    The reader for a message file ``f`` (opened ``"rb"``) whose canonical
    (CRLF) size the index says is ``size``: ``f`` itself when the file is
    that size already (stored with CRLF), else a converting reader.
    """
    physical = os.fstat(f.fileno()).st_size
    if physical == size:
        return f
    if physical <= WHOLE_LIMIT:
        try:
            data = f.read()
        finally:
            f.close()
        return io.BytesIO(toCRLF(data))
    return openCRLF(f)

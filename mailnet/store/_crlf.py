"""Serve LF-terminated message files (mutt, Dovecot's default) as CRLF."""

from __future__ import annotations

import io


class CRLFReader(io.RawIOBase):
    """
    Wraps a binary file: every LF not preceded by CR comes out as CRLF.
    Bare CRs are left alone, matching
    :func:`mailnet.store._maildirfiles.canonicalSize`.
    """

    def __init__(self, raw, chunk=1 << 16):
        self._raw = raw
        self._chunk = chunk
        self._pending = b""
        self._prevCR = False

    def readable(self):
        return True

    def _convert(self, data: bytes) -> bytes:
        head = b""
        if self._prevCR and data[:1] == b"\n":
            head, data = b"\n", data[1:]
        self._prevCR = data[-1:] == b"\r" if data else self._prevCR and not head
        return head + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def readinto(self, buffer):
        while not self._pending:
            data = self._raw.read(self._chunk)
            if not data:
                return 0
            self._pending = self._convert(data)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self):
        if not self.closed:
            self._raw.close()
        super().close()


def openCRLF(raw):
    return io.BufferedReader(CRLFReader(raw))

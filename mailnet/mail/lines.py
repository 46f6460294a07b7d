"""
Line endings and dot-stuffing, without I/O beyond the file objects given.

* :func:`toCRLF`, :class:`CRLFReader`, :func:`openCRLF`: LF-terminated
  message text (mutt, Dovecot's default Maildir files) served as CRLF.
* :func:`canonicalFile`: a file with bare LFs made canonical (CRLF),
  spooled, for messages clients hand us (IMAP APPEND).
* :class:`DotStuffer`: the send side of the dot-terminated data of SMTP
  DATA (RFC 5321 s4.5.2) and POP3 RETR/TOP (RFC 1939 s3).  The receive side
  (unstuffing, and refusing bare CR or LF against smuggling) is SMTP
  grammar and stays in :mod:`mailnet.smtp.parser`.
"""

from __future__ import annotations

import io
import re
import tempfile

CRLF = b"\r\n"
CHUNK = 1 << 16
# canonicalFile keeps up to this much in memory before spilling to disk.
SPOOL_LIMIT = 1024 * 1024


def toCRLF(data: bytes) -> bytes:
    """
    Every LF not preceded by CR becomes CRLF; bare CRs are left alone
    (so ``\\r\\r\\n`` stays as it is), matching
    the Maildir store's ``canonicalSize``.
    """
    if b"\r" not in data:
        # Only LFs (mutt, procmail, Dovecot's own files): one pass.
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class CRLFReader(io.RawIOBase):
    """
    Wraps a binary file: every LF not preceded by CR comes out as CRLF.
    Bare CRs are left alone, matching
    the Maildir store's ``canonicalSize``.
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


def canonicalFile(f):
    """
    The message with bare LF turned into CRLF (the store keeps canonical
    messages; some clients APPEND with bare LF).  Returns a file object
    positioned at 0: ``f`` itself when it is canonical already.
    """
    bare = False
    previous = b""
    while True:
        chunk = f.read(SPOOL_LIMIT)
        if not chunk:
            break
        data = (b"\r" if previous == b"\r" else b"") + chunk
        if data.count(b"\n") != data.count(b"\r\n"):
            bare = True
            break
        previous = chunk[-1:]
    f.seek(0)
    if not bare:
        return f
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)
    pendingCR = False
    while True:
        chunk = f.read(SPOOL_LIMIT)
        if not chunk:
            break
        if pendingCR:
            chunk = b"\r" + chunk
            pendingCR = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            pendingCR = True
        out.write(toCRLF(chunk))
    if pendingCR:
        out.write(b"\r")
    out.seek(0)
    return out



def readHeaderBlock(f, limit: int) -> bytes:
    """
    The header block of the message in the file ``f`` from its position:
    lines up to and including the empty line that ends it, stopping once
    ``limit`` bytes have been read (a hostile header is not read whole).
    """
    out = []
    size = 0
    while size < limit:
        line = f.readline()
        if not line:
            break
        out.append(line)
        size += len(line)
        if line in (b"\r\n", b"\n"):
            break
    return b"".join(out)

_LINE_DOT = re.compile(rb"\n\.")


class DotStuffer:
    """
    Dot-stuff data streamed in chunks of any size (RFC 5321 s4.5.2,
    RFC 1939 s3): a line that starts with "." gets another "." in front.
    :meth:`end` returns the terminator, with a CRLF first if the data does
    not end with one.
    """

    def __init__(self):
        self.atLineStart = True
        self.tail = b""

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        # A regex substitution is faster than bytes.replace here on large
        # chunks (measured on 64 KiB chunks).
        out = _LINE_DOT.sub(b"\n..", chunk)
        if self.atLineStart and chunk[:1] == b".":
            out = b"." + out
        self.atLineStart = chunk[-1:] == b"\n"
        self.tail = (self.tail + chunk[-2:])[-2:]
        return out

    def end(self) -> bytes:
        if self.tail == b"" or self.tail == CRLF:
            return b"." + CRLF
        return CRLF + b"." + CRLF

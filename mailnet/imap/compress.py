"""
RFC 4978 COMPRESS=DEFLATE: the two halves of the compression layer, without
I/O.

:class:`Deflater` compresses what the server writes (raw deflate, RFC 1951,
no zlib header: window bits -15) and ends every batch of output with a
``Z_SYNC_FLUSH``, so the client can decompress each response as soon as it
arrives (RFC 4978 s4).  :class:`Inflater` decompresses what the client
sends, at most :data:`CHUNK` bytes per step: a few kilobytes of deflate can
stand for megabytes (about 1:1000), so the protocol takes one bounded step
at a time and stops while the session has asked it to stop reading
(decompression bombs cost at most one chunk of memory, not the ratio times
the input).

The protocol (:mod:`mailnet.imap.server`) puts them between the transport
(TLS when active: RFC 4978 s3, compress first, then encrypt) and the
session.
"""

from __future__ import annotations

import zlib
from collections import deque

# Most bytes one inflate step yields.
CHUNK = 64 * 1024
# Dovecot's default imap_compress_deflate_level (zlib's default too).
LEVEL = 6


class CompressionError(Exception):
    """The client's compressed stream is broken (or was ended)."""


class Deflater:
    """The server's side: raw deflate, sync-flushed after each batch."""

    def __init__(self, level=LEVEL):
        self._z = zlib.compressobj(level, zlib.DEFLATED, -15)

    def compress(self, data) -> bytes:
        """One batch of output, flushed (RFC 4978 s4: Z_SYNC_FLUSH)."""
        z = self._z
        return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)

    def compressSequence(self, pieces) -> list:
        """Several pieces as one batch: the compressed pieces (empty ones left out), flushed once."""
        z = self._z
        out = [c for c in map(z.compress, pieces) if c]
        out.append(z.flush(zlib.Z_SYNC_FLUSH))
        return out


class Inflater:
    """
    The client's side: compressed bytes go in with :meth:`push`, and come
    out at most ``chunk`` bytes at a time from :meth:`next`.
    """

    def __init__(self, chunk=CHUNK):
        self.chunk = chunk
        self._z = zlib.decompressobj(-15)
        self._input = deque()
        self._more = False  # the last step filled its chunk: zlib may hold more output
        self._ended = False

    def push(self, data):
        if data:
            self._input.append(data)

    def pending(self) -> bool:
        """Whether compressed input (or output zlib holds) is waiting for :meth:`next`."""
        return bool(self._input or self._more or self._z.unconsumed_tail)

    def next(self) -> bytes:
        """
        Up to ``chunk`` decompressed bytes; ``b""`` when more input is needed.

        @raise CompressionError: the input is not deflate data, or the
            client ended the stream (an IMAP stream never ends, RFC 4978 s3:
            everything after COMPRESS is compressed), or sent data after
            its end.
        """
        z = self._z
        while True:
            if self._ended:
                raise CompressionError("the compressed stream was ended")
            if self._more or z.unconsumed_tail:
                data = z.unconsumed_tail
            elif self._input:
                data = self._input.popleft()
            else:
                return b""
            try:
                out = z.decompress(data, self.chunk)
            except zlib.error as e:
                self._input.clear()
                raise CompressionError("invalid compressed data (%s)" % e) from None
            self._more = len(out) == self.chunk
            if z.eof:
                self._ended = True
                self._more = False
                self._input.clear()
            if out:
                return out

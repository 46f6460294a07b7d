"""
The first layer of the IMAP command reader, without I/O: framing the byte
stream into commands (lines and literals: ``{N}``, ``{N+}`` (RFC 7888
LITERAL+), ``~{N}`` (RFC 3516 literal8)).  See :mod:`mailnet.imap.parser`,
which parses the framed commands and re-exports these names.
"""

from __future__ import annotations

import re
import tempfile

from mailnet.imap.serialize import ASTRING_CHARS

# Literals larger than this go to a temporary file.
SPOOL_THRESHOLD = 256 * 1024


# tag = 1*<any ASTRING-CHAR except "+">
_TAG_CHARS = ASTRING_CHARS - {ord("+")}


class Literal:
    """
    The contents of one literal: bytes in memory, or a temporary file for
    large ones.  ``len(literal)`` is its size.
    """

    __slots__ = ("size", "binary", "_buf", "_file")

    def __init__(self, size, binary=False):
        self.size = size
        self.binary = binary
        self._buf = bytearray() if size <= SPOOL_THRESHOLD else None
        self._file = None if size <= SPOOL_THRESHOLD else tempfile.TemporaryFile(prefix="mailnet-imap-")

    def _write(self, data):
        if self._buf is not None:
            self._buf += data
        else:
            self._file.write(data)

    def __len__(self):
        return self.size

    def bytes(self) -> bytes:
        """The contents (read into memory: only for small literals)."""
        if self._buf is not None:
            return bytes(self._buf)
        self._file.seek(0)
        return self._file.read()

    def open(self):
        """A readable binary file positioned at 0 (for APPEND)."""
        import io

        if self._buf is not None:
            return io.BytesIO(self._buf)
        self._file.seek(0)
        return self._file

    def close(self):
        if self._file is not None:
            self._file.close()
        self._buf = None

    def __repr__(self):
        return f"<Literal {self.size} bytes>"


# Events from CommandReader.next()


class Frame:
    """A complete command: ``parts`` alternate line segments (bytes) and
    :class:`Literal` objects, starting and ending with a segment."""

    __slots__ = ("parts", "tag")

    def __init__(self, parts, tag):
        self.parts = parts
        self.tag = tag


class NeedContinuation:
    """A synchronizing literal was announced and accepted: send ``+``."""

    __slots__ = ("size",)

    def __init__(self, size):
        self.size = size


class FrameError:
    """
    A command was rejected while being read (too long, literal too big).
    The session answers ``<tag> BAD`` (or an untagged BAD without a tag);
    with ``fatal`` it says BYE and closes.
    """

    __slots__ = ("tag", "text", "code", "fatal")

    def __init__(self, tag, text, code=None, fatal=False):
        self.tag = tag
        self.text = text
        self.code = code
        self.fatal = fatal


class RawLine:
    """A line read in raw mode (IDLE's DONE, AUTHENTICATE responses)."""

    __slots__ = ("line",)

    def __init__(self, line):
        self.line = line


_LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}$")


def _tagOf(segment) -> str | None:
    i = 0
    while i < len(segment) and segment[i] in _TAG_CHARS:
        i += 1
    if i and (i == len(segment) or segment[i] == 0x20):
        return segment[:i].decode("ascii")
    return None


class CommandReader:
    """
    Frame the client's byte stream into commands.

    @param maxLine: most bytes of command text (all line segments of one
        command, literals excluded): ``[limits] imap_line_length``.
    @param maxLiteral: largest single literal: ``[limits] imap_literal_size``.
    @param maxCommandLiterals: most literal bytes in one command.
    """

    def __init__(self, maxLine=65536, maxLiteral=35 * 1024 * 1024, maxCommandLiterals=None, maxLiterals=1000):
        self.maxLine = maxLine
        self.maxLiteral = maxLiteral
        self._maxCommandLiterals = maxCommandLiterals
        self.maxLiterals = maxLiterals
        self.raw = False
        self._buf = bytearray()
        self._reset()

    @property
    def maxCommandLiterals(self):
        return self._maxCommandLiterals or (self.maxLiteral + 1024 * 1024)

    def _reset(self):
        self._parts = []
        self._textSize = 0
        self._literalBytes = 0
        self._literal = None  # Literal being read
        self._remaining = 0  # bytes of the current literal still expected
        self._skip = 0  # bytes of a refused non-synchronizing literal to drop
        self._error = None  # FrameError to report once the command ends
        self._longLine = False  # dropping the rest of an over-long line
        self._tail = b""  # last bytes of a dropped line (to see a literal marker)
        self._tag = None

    # Input

    def feed(self, data):
        self._buf += data

    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buf)

    def takeBuffered(self) -> bytes:
        """Take the bytes received and not yet read (RFC 4978: after COMPRESS they are compressed)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def clear(self):
        """Forget everything buffered and any command in progress (STARTTLS)."""
        self._buf.clear()
        self._closeParts()
        self._reset()

    def _closeParts(self):
        for p in self._parts:
            if isinstance(p, Literal):
                p.close()
        if self._literal is not None:
            self._literal.close()

    @property
    def midCommand(self) -> bool:
        return bool(self._parts) or self._literal is not None or self._skip > 0 or self._longLine

    # Output

    def next(self):
        """
        The next event, or None when more input is needed.
        """
        buf = self._buf
        while True:
            if self._skip:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                if self._skip:
                    return None
                continue
            if self._literal is not None:
                n = min(self._remaining, len(buf))
                if n:
                    self._literal._write(bytes(buf[:n]) if n < len(buf) else bytes(buf))
                    del buf[:n]
                    self._remaining -= n
                if self._remaining:
                    return None
                self._parts.append(self._literal)
                self._literal = None
                continue
            end = buf.find(b"\n")
            if end < 0:
                if self.raw:
                    if len(buf) > self.maxLine:
                        buf.clear()
                        return FrameError(None, "Line too long", fatal=True)
                    return None
                if len(buf) + self._textSize > self.maxLine:
                    self._dropLongLine(bytes(buf))
                    buf.clear()
                return None
            line = bytes(buf[:end])
            del buf[:end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.raw:
                return RawLine(line)
            if self._longLine:
                line = self._tail + line
                self._longLine = False
                self._tail = b""
                event = self._lineDone(line, dropped=True)
            else:
                event = self._lineDone(line)
            if event is not None:
                return event

    def _dropLongLine(self, data):
        if not self._longLine:
            self._longLine = True
            if self._tag is None and not self._parts:
                self._tag = _tagOf(data[:200])
            if self._error is None:
                self._error = FrameError(self._tag, "Command line too long", b"TOOBIG")
        self._tail = (self._tail + data)[-40:]

    def _lineDone(self, line, dropped=False):
        if not self._parts and self._tag is None:
            self._tag = _tagOf(line[:200])
        if not dropped:
            self._textSize += len(line) + 2
            if self._textSize > self.maxLine and self._error is None:
                self._error = FrameError(self._tag, "Command line too long", b"TOOBIG")
        m = _LITERAL_AT_END.search(line)
        if m is None:
            # End of the command.
            if self._error is not None:
                return self._finishError()
            self._parts.append(line)
            frame = Frame(self._parts, self._tag)
            self._parts = []
            self._reset()
            return frame
        size = int(m.group(2))
        sync = not m.group(3)
        binary = bool(m.group(1))
        if self._error is None:
            if size > self.maxLiteral or self._literalBytes + size > self.maxCommandLiterals:
                self._error = FrameError(self._tag, "Literal too big (limit %d bytes)" % self.maxLiteral, b"TOOBIG")
            elif len(self._parts) // 2 >= self.maxLiterals:
                self._error = FrameError(self._tag, "Too many literals in one command")
        if self._error is not None:
            if sync:
                # The client waits for "+" that will not come: the command
                # ends here for both sides (RFC 3501 s7.5).
                return self._finishError()
            if size > self.maxCommandLiterals:
                # Too big even to read and drop (an absurd count, or more
                # than a command could ever carry): the client would wait
                # for its answer while we swallow everything it sends.
                # RFC 9051 s7.1.5: BYE, and the connection is closed.
                self._closeParts()
                self._reset()
                self._buf.clear()
                return FrameError(None, "Literal of %d bytes is over the limit (%d bytes) and too big to skip"
                                  % (size, self.maxLiteral), b"TOOBIG", fatal=True)
            # RFC 7888 s4: a non-synchronizing literal is sent anyway; drop it.
            self._skip = size
            return None
        self._parts.append(line[:m.start()])
        self._literalBytes += size
        self._literal = Literal(size, binary)
        self._remaining = size
        if sync:
            return NeedContinuation(size)
        return None

    def _finishError(self):
        error = self._error
        self._closeParts()
        self._parts = []
        self._reset()
        return error

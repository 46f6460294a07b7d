"""
SMTP replies as a client reads them (RFC 5321 s4.2): bytes in,
:class:`mailnet.mail.reply.Reply` objects out, with limits on a line and on
a reply.  No I/O; used by :class:`mailnet.queue.clientmachine.ClientMachine`.
"""

from __future__ import annotations

import re

from mailnet.mail.reply import Reply

MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 1000

_LINE = re.compile(rb"^(\d{3})([ -]?)(.*)$", re.S)


class ProtocolError(Exception):
    """The peer said something that is not SMTP."""


class ReplyParser:
    """
    Bytes in, :class:`Reply` objects out (RFC 5321 s4.2).  Lines end in
    CRLF (a bare LF is tolerated); ``250-`` continues a reply, ``250 `` or
    ``250`` ends it.  Raises :class:`ProtocolError` on a line that does not
    start with three digits, on a line longer than ``maxLine`` or a reply
    of more than ``maxLines`` lines.
    """

    def __init__(self, maxLine=MAX_REPLY_LINE, maxLines=MAX_REPLY_LINES):
        self.maxLine = maxLine
        self.maxLines = maxLines
        self._buffer = b""
        self._lines = []
        self._code = None

    def feed(self, data: bytes) -> list[Reply]:
        # Lines are read in place, by position, and the rest kept once at the
        # end: cutting the buffer after each line copied what followed it, so
        # a large multi-line reply in one read cost time quadratic in its size.
        buffer = self._buffer + data if self._buffer else data
        replies = []
        start = 0
        try:
            while True:
                at = buffer.find(b"\n", start)
                if at < 0:
                    if len(buffer) - start > self.maxLine:
                        raise ProtocolError(f"reply line longer than {self.maxLine} bytes")
                    return replies
                line = buffer[start:at]
                start = at + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > self.maxLine:
                    raise ProtocolError(f"reply line longer than {self.maxLine} bytes")
                m = _LINE.match(line)
                if not m:
                    raise ProtocolError(f"not an SMTP reply: {line[:80]!r}")
                code = int(m.group(1))
                if self._code is None:
                    self._code = code
                elif code != self._code:
                    raise ProtocolError(f"reply code changed within a reply: {self._code} then {code}")
                self._lines.append(m.group(3).decode("utf-8", "replace"))
                if len(self._lines) > self.maxLines:
                    raise ProtocolError(f"reply longer than {self.maxLines} lines")
                if m.group(2) != b"-":
                    replies.append(Reply.received(self._code, tuple(self._lines)))
                    self._lines = []
                    self._code = None
        finally:
            self._buffer = buffer[start:]

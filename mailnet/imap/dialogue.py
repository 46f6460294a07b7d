"""
The IMAP dialogue at ``[log] level = "debug"``: what a client sent (``C:``)
and what the server answered (``S:``), one log line per command and per
response line, like the SMTP and POP3 dialogues.

Never shown: passwords (``LOGIN``'s second argument, ``AUTHENTICATE``'s
initial and continued responses) and the contents of literals, either way
(``APPEND`` data, ``FETCH`` bodies): a literal is shown as its ``{n}``.
Lines are cut after :data:`LINE` characters, with the full size given.

A session makes a :class:`Dialogue` only when debug is on (see
:func:`enabled`); when it is off the session's output methods are the plain
ones, so the FETCH path pays nothing.
"""

from __future__ import annotations

import re

from twisted.logger import LogLevel

from mailnet import logs
from mailnet.imap.parser import Literal
from mailnet.logs import Logger

log = Logger()

# Characters of a line shown; the rest is cut (its size is given).
LINE = 200
_TAIL = 32  # bytes kept of a line's end, enough for a literal's {n}
_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,20})\+?\}$")
# LOGIN's first argument when a second follows (the password is never shown).
_LOGIN = re.compile(rb'(?i)^(\S+ LOGIN )("(?:[^"\\]|\\.)*"|[^\s"{]+) ')
_AUTHENTICATE = re.compile(rb"(?i)^(\S+ AUTHENTICATE \S+)")
_PASSWORDS = (b"LOGIN", b"AUTHENTICATE")
# Responses whose text cannot hold a literal (a "{3}" at their end is text).
_STATUS = re.compile(rb"\* (OK|NO|BAD|BYE|PREAUTH)\b")


def enabled() -> bool:
    """Whether the dialogue is logged (checked once per session)."""
    return logs._predicate.logLevelForNamespace(__name__) <= LogLevel.debug


def _shown(data: bytes, size: int) -> str:
    text = data[:LINE].decode("utf-8", "replace")
    if size > LINE:
        text += "... (%d bytes)" % size
    return text


class Dialogue:
    """The debug log of one session."""

    def __init__(self, peer):
        self.peer = peer
        # A response line being put together across writes and literals.
        self._head = bytearray()  # its first LINE bytes, literals left out
        self._size = 0  # its bytes so far, literals included
        self._tail = b""  # its last bytes (for a {n} at the end)
        self._skip = 0  # bytes of a literal still to come: not shown

    # Client to server

    def command(self, parts):
        """A whole command: line segments (bytes) and :class:`Literal` objects."""
        first = parts[0]
        verb = first.split(b" ", 2)[1].upper() if first.count(b" ") else b""
        if verb in _PASSWORDS:
            m = _LOGIN.match(first) if verb == b"LOGIN" else _AUTHENTICATE.match(first)
            head = m.group(0).rstrip() if m else first.split(b" ", 2)[0] + b" " + verb
            self._line("C", head + b" ***", len(head) + 4)
            return
        out = bytearray()
        size = 0
        for part in parts:
            if isinstance(part, Literal):
                marker = b"%s{%d}" % (b"~" if part.binary else b"", len(part))
                size += len(marker) + len(part)
                part = marker
            else:
                size += len(part)
            if len(out) < LINE:
                out += part[:LINE - len(out)]
        self._line("C", bytes(out), size)

    def rawLine(self, line, secret):
        """A line read outside a command: IDLE's DONE, or a SASL response (``secret``)."""
        if secret:
            self._line("C", b"***", 3)
        else:
            self._line("C", line[:LINE], len(line))

    # Server to client

    def response(self, data):
        """Bytes written to the client: each line logged when it ends."""
        n = len(data)
        i = 0
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                self._size += k
                i += k
                continue
            end = data.find(b"\n", i)
            stop = n if end < 0 else end
            room = LINE - len(self._head)
            if room > 0:
                self._head += data[i:min(stop, i + room)]
            self._tail = (self._tail + data[max(i, stop - _TAIL):stop])[-_TAIL:]
            self._size += stop - i
            if end < 0:
                return
            i = end + 1
            tail = self._tail[:-1] if self._tail.endswith(b"\r") else self._tail
            m = _LITERAL_AT_END.search(tail)
            if m and self._head[:2] == b"* " and not _STATUS.match(self._head):
                # The literal's bytes follow; the line goes on after them.
                self._skip = int(m.group(1))
                self._tail = b""
                if self._head.endswith(b"\r"):
                    del self._head[-1]
                continue
            head = bytes(self._head)
            if head.endswith(b"\r"):
                head = head[:-1]
            size = self._size - (1 if self._tail.endswith(b"\r") else 0)
            self._head = bytearray()
            self._size = 0
            self._tail = b""
            self._line("S", head, size)

    def _line(self, who, data, size):
        log.debug("imap: {peer}: {who}: {line}", peer=self.peer, who=who, line=_shown(data, size))

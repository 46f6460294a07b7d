"""
One SMTP reply (RFC 5321 s4.2), whichever side it is on: what our server
sends (the constants in :mod:`mailnet.smtp.replies`) and what a peer sent
our client (built by :class:`mailnet.queue.replyparser.ReplyParser`).

RFC 2034 s4: every 2xx, 4xx and 5xx reply carries an RFC 3463 enhanced
status code, except the greeting and the replies to HELO/EHLO; 3xx replies
carry none.  :class:`Reply` renders that rule, so callers only give the code,
the enhanced code and the text.
"""

from __future__ import annotations

import re

from mailnet.errors import DeliveryError

# RFC 2034 s3: an enhanced code starts the text of a reply line.
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")


class Reply:
    """
    One SMTP reply.

    ``Reply(code, enhanced, text)`` is one we send; :meth:`received` makes
    one a peer sent.

    @ivar code: the three-digit reply code (int).
    @ivar enhanced: the enhanced status code (``"2.1.0"``) or ``""``.
    @ivar lines: the text lines (at least one).  Of a reply we send: without
        the enhanced code (it is put in front of each when rendered); of a
        received reply: as received, after the code and separator.
    @ivar data: the reply as sent (bytes, CRLF line ends), rendered once.
    """

    __slots__ = ("code", "enhanced", "lines", "data", "_text")

    def __init__(self, code: int, enhanced: str, text):
        if isinstance(text, str):
            text = [text]
        lines = [" ".join(line.split()) for line in text] or [""]
        if enhanced and enhanced[0] != str(code)[0]:
            raise ValueError(f"enhanced code {enhanced} does not agree with {code}")
        self.code = code
        self.enhanced = enhanced
        self.lines = lines
        prefix = f"{enhanced} " if enhanced else ""
        out = []
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out.append(f"{code}{sep}{prefix}{line}\r\n")
        self.data = "".join(out).encode("utf-8")

    @classmethod
    def received(cls, code: int, lines: tuple) -> "Reply":
        """
        A reply a peer sent: ``lines`` are the texts after the code and the
        separator.  The enhanced code is the first line's when its class
        agrees with the reply code (RFC 2034 s3); :attr:`text` is every
        line without its enhanced code, blank lines left out.
        """
        self = cls.__new__(cls)
        self.code = code
        self.lines = lines
        m = _ENHANCED.match(lines[0]) if lines else None
        self.enhanced = m.group(1) if m and m.group(1)[0] == str(code)[0] else ""
        parts = []
        for line in lines:
            m = _ENHANCED.match(line)
            part = (line[m.end():] if m else line).strip()
            if part:
                parts.append(part)
        self._text = " ".join(parts)
        last = len(lines) - 1
        self.data = "".join(f"{code}{' ' if i == last else '-'}{line}\r\n"
                            for i, line in enumerate(lines)).encode("utf-8")
        return self

    @property
    def text(self) -> str:
        """The text of every line, without enhanced codes, joined by spaces."""
        try:
            return self._text  # set for a received reply only
        except AttributeError:
            return " ".join(self.lines)

    @property
    def isError(self) -> bool:
        return self.code >= 400

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    def withText(self, text) -> "Reply":
        """The same codes with other text (``REPLY.withText("...")``)."""
        return Reply(self.code, self.enhanced, text)

    def error(self, remote=None, default=None) -> DeliveryError:
        """
        This reply as a :class:`DeliveryError`; ``default`` (``"0.0"``) is
        the subject and detail of the enhanced code when the reply has none.
        1xx, 2xx and 3xx replies where a failure is being reported are
        protocol errors: temporary.
        """
        if 400 <= self.code < 600:
            enhanced = self.enhanced or (f"{self.code // 100}.{default}" if default else None)
            return DeliveryError(self.code, enhanced, self.text, self.code < 500, remote)
        return DeliveryError(451, "4.5.0", f"unexpected reply: {self}", True, remote)

    def __eq__(self, other):
        return isinstance(other, Reply) and self.data == other.data

    def __hash__(self):
        return hash(self.data)

    def __str__(self):
        return " ".join(str(x) for x in (self.code, self.enhanced, self.text) if x)

    def __repr__(self):
        return f"<Reply {self.data.decode('utf-8', 'replace').strip()!r}>"
